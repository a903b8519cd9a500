/*
 * Pseudonymisation keys: the master secret on disk, each workspace's
 * subkey, and HMAC-SHA256 with the inner and outer SHA-256 states computed
 * once per key. Hashing a short identifier is then two digest-context
 * copies and two short updates (~0.2 us) instead of a full HMAC set-up
 * (~2 us). The derivation itself is documented in privacy.h.
 */
#include "privacy/privacy_int.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lib/alloc.h"
#include "lib/digest.h"
#include "lib/err.h"
#include "lib/log.h"

#define SHA256_BLOCK 64
#define SHA256_BYTES 32

struct privacy_master {
	unsigned char key[PRIVACY_MASTER_BYTES];
};

struct privacy_hasher {
	EVP_MD_CTX *inner;	/* SHA-256 that has absorbed subkey ^ ipad */
	EVP_MD_CTX *outer;	/* SHA-256 that has absorbed subkey ^ opad */
};

static pthread_once_t crypto_once = PTHREAD_ONCE_INIT;
static EVP_MD *sha256_md;	/* fetched once, not per digest */
static pthread_key_t scratch_key;	/* frees a thread's scratch at its exit */
static _Thread_local EVP_MD_CTX *scratch;

/* libcrypto failing on a valid context means it could not allocate. */
static void crypto_fail(const char *call)
{
	log_error("privacy_crypto_failed", "call=%s", call);
	abort();
}

static void scratch_free(void *ctx)
{
	EVP_MD_CTX_free(ctx);
}

static void crypto_init(void)
{
	sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
	if (!sha256_md)
		crypto_fail("EVP_MD_fetch");
	if (pthread_key_create(&scratch_key, scratch_free) != 0)
		crypto_fail("pthread_key_create");
}

static EVP_MD_CTX *md_ctx_new(void)
{
	EVP_MD_CTX *c = EVP_MD_CTX_new();

	if (!c)
		crypto_fail("EVP_MD_CTX_new");
	return c;
}

/* This thread's context for one hash, kept so a hash allocates no context. */
static EVP_MD_CTX *scratch_ctx(void)
{
	if (!scratch) {
		scratch = md_ctx_new();
		if (pthread_setspecific(scratch_key, scratch) != 0)
			crypto_fail("pthread_setspecific");
	}
	return scratch;
}

/* Absorbs key ^ ipad into inner and key ^ opad into outer (RFC 2104). */
static void keyed_states(const unsigned char *key, size_t len, EVP_MD_CTX *inner,
	EVP_MD_CTX *outer)
{
	unsigned char pad[SHA256_BLOCK];

	assert(len <= sizeof(pad));
	memset(pad, 0x36, sizeof(pad));
	for (size_t i = 0; i < len; i++)
		pad[i] ^= key[i];
	if (EVP_DigestInit_ex(inner, sha256_md, NULL) != 1 ||
	    EVP_DigestUpdate(inner, pad, sizeof(pad)) != 1)
		crypto_fail("EVP_DigestInit_ex");
	for (size_t i = 0; i < sizeof(pad); i++)
		pad[i] ^= 0x36 ^ 0x5c;
	if (EVP_DigestInit_ex(outer, sha256_md, NULL) != 1 ||
	    EVP_DigestUpdate(outer, pad, sizeof(pad)) != 1)
		crypto_fail("EVP_DigestInit_ex");
	OPENSSL_cleanse(pad, sizeof(pad));
}

/* HMAC of a then b (concatenated) from precomputed states; reads them only. */
static void keyed_hash(const EVP_MD_CTX *inner, const EVP_MD_CTX *outer, const void *a,
	size_t alen, const void *b, size_t blen, unsigned char out[SHA256_BYTES])
{
	EVP_MD_CTX *c = scratch_ctx();
	unsigned char d[SHA256_BYTES];

	if (EVP_MD_CTX_copy_ex(c, inner) != 1 || EVP_DigestUpdate(c, a, alen) != 1 ||
	    EVP_DigestUpdate(c, b, blen) != 1 || EVP_DigestFinal_ex(c, d, NULL) != 1 ||
	    EVP_MD_CTX_copy_ex(c, outer) != 1 || EVP_DigestUpdate(c, d, sizeof(d)) != 1 ||
	    EVP_DigestFinal_ex(c, out, NULL) != 1)
		crypto_fail("hmac");
}

struct privacy_hasher *privacy_hasher_new(const struct privacy_master *m, int64_t workspace_id)
{
	/* sizeof counts the NUL: the 0x00 between label and id */
	static const char label[] = "weft-workspace-subkey";
	unsigned char subkey[SHA256_BYTES];
	struct privacy_hasher *h;
	EVP_MD_CTX *mi, *mo;
	char id[24];
	int idlen;

	assert(m);
	pthread_once(&crypto_once, crypto_init);
	idlen = snprintf(id, sizeof(id), "%" PRId64, workspace_id);
	mi = md_ctx_new();
	mo = md_ctx_new();
	keyed_states(m->key, sizeof(m->key), mi, mo);
	keyed_hash(mi, mo, label, sizeof(label), id, (size_t)idlen, subkey);
	EVP_MD_CTX_free(mi);
	EVP_MD_CTX_free(mo);

	h = xmalloc(sizeof(*h));
	h->inner = md_ctx_new();
	h->outer = md_ctx_new();
	keyed_states(subkey, sizeof(subkey), h->inner, h->outer);
	OPENSSL_cleanse(subkey, sizeof(subkey));
	return h;
}

void privacy_hasher_free(struct privacy_hasher *h)
{
	if (!h)
		return;
	EVP_MD_CTX_free(h->inner);
	EVP_MD_CTX_free(h->outer);
	free(h);
}

void privacy_identifier_key(const struct privacy_hasher *h, const char *type,
	const char *norm, size_t len, uint8_t out[PRIVACY_KEY_BYTES])
{
	unsigned char d[SHA256_BYTES];

	assert(h && type);
	/* the type's NUL is the 0x00 separator */
	keyed_hash(h->inner, h->outer, type, strlen(type) + 1, norm, len, d);
	memcpy(out, d, PRIVACY_KEY_BYTES);
}

void privacy_sha256_hex(const char *data, size_t len, char out[65])
{
	uint8_t d[32];

	sha256(data, len, d);
	hex_encode(d, sizeof(d), out);
}

static int write_all(int fd, const unsigned char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = write(fd, p, n);

		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* fsyncs the folder holding path, so the new name survives a crash too. */
static int sync_parent(const char *path)
{
	const char *slash = strrchr(path, '/');
	char *dir = slash ? xstrndup(path, slash == path ? 1 : (size_t)(slash - path)) : xstrdup(".");
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	int rc = -1;

	if (fd >= 0) {
		rc = fsync(fd);
		close(fd);
	}
	free(dir);
	return rc;
}

int privacy_master_create(const char *path)
{
	unsigned char key[PRIVACY_MASTER_BYTES];
	const char *step;
	int fd, e;

	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0) {
		e = errno;
		log_error("privacy_master_create", "msg=\"cannot create master key '%s': %s\"",
			  path, strerror(e));
		return e == EEXIST ? WEFT_ECONFLICT : WEFT_EIO;
	}
	step = "fchmod";
	if (fchmod(fd, 0600) != 0)
		goto out_unlink;
	step = "RAND_bytes";
	if (RAND_bytes(key, sizeof(key)) != 1) {
		errno = EIO;
		goto out_unlink;
	}
	step = "write";
	if (write_all(fd, key, sizeof(key)) != 0)
		goto out_unlink;
	step = "fsync";
	if (fsync(fd) != 0)
		goto out_unlink;
	step = "close";
	e = close(fd);
	fd = -1;
	if (e != 0)
		goto out_unlink;
	step = "fsync of its folder";
	if (sync_parent(path) != 0)
		goto out_unlink;
	OPENSSL_cleanse(key, sizeof(key));
	log_info("privacy_master_created", "path='%s'", path);
	return 0;

out_unlink:
	e = errno;
	log_error("privacy_master_create", "msg=\"cannot create master key '%s': %s failed: %s\"",
		  path, step, strerror(e));
	if (fd >= 0)
		close(fd);
	unlink(path);
	OPENSSL_cleanse(key, sizeof(key));
	return WEFT_EIO;
}

static int refuse(const char *path, int fd, int err, const char *why)
{
	log_error("privacy_master_load", "msg=\"cannot load master key '%s': %s\"", path, why);
	if (fd >= 0)
		close(fd);
	return err;
}

int privacy_master_load(const char *path, struct privacy_master **out)
{
	unsigned char key[PRIVACY_MASTER_BYTES];
	struct privacy_master *m;
	char why[160];
	struct stat st;
	size_t got = 0;
	int fd;

	*out = NULL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0 && errno == ENOENT)
		return refuse(path, -1, WEFT_ENOTFOUND,
			      "no such file (WEFT_PII_KEY_FILE must name a 32-byte key file)");
	if (fd < 0)
		return refuse(path, -1, WEFT_EIO, strerror(errno));
	if (fstat(fd, &st) != 0)
		return refuse(path, fd, WEFT_EIO, strerror(errno));
	if (!S_ISREG(st.st_mode))
		return refuse(path, fd, WEFT_EINVAL, "not a regular file");
	if (st.st_mode & 077) {
		snprintf(why, sizeof(why), "mode %04o lets group or others access it; "
			 "it must be 0600 or stricter (chmod 600)", (unsigned)(st.st_mode & 07777));
		return refuse(path, fd, WEFT_EINVAL, why);
	}
	if (st.st_size != PRIVACY_MASTER_BYTES) {
		snprintf(why, sizeof(why), "it is %lld bytes long; a master key is exactly %d",
			 (long long)st.st_size, PRIVACY_MASTER_BYTES);
		return refuse(path, fd, WEFT_EINVAL, why);
	}
	while (got < sizeof(key)) {
		ssize_t r = read(fd, key + got, sizeof(key) - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0) {
			OPENSSL_cleanse(key, sizeof(key));
			return refuse(path, fd, WEFT_EIO, r < 0 ? strerror(errno) : "file shrank while read");
		}
		got += (size_t)r;
	}
	close(fd);
	m = xmalloc(sizeof(*m));
	memcpy(m->key, key, sizeof(key));
	OPENSSL_cleanse(key, sizeof(key));
	*out = m;
	return 0;
}

void privacy_master_free(struct privacy_master *m)
{
	if (!m)
		return;
	OPENSSL_cleanse(m, sizeof(*m));
	free(m);
}
