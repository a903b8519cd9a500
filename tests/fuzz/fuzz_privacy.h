/*
 * What the harnesses that mask need from privacy/: a master secret, loaded
 * the one way privacy.h offers (a 0600 file of 32 bytes), and a workspace
 * hasher. The key is fixed so that every "h:" value a run produces is the
 * same in the next run, and the temporary file is gone once loaded.
 */
#ifndef TESTS_FUZZ_FUZZ_PRIVACY_H
#define TESTS_FUZZ_FUZZ_PRIVACY_H

#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "privacy/privacy.h"
#include "tests/fuzz/fuzz.h"

static inline struct privacy_hasher *fuzz_hasher_new(int64_t workspace_id)
{
	char dir[] = "/tmp/weft-fuzz-XXXXXX";
	char path[sizeof(dir) + 16];
	unsigned char key[PRIVACY_MASTER_BYTES];
	struct privacy_master *master;
	struct privacy_hasher *h;
	int fd;

	for (size_t i = 0; i < sizeof(key); i++)
		key[i] = (unsigned char)(0x5a ^ (i * 37));
	if (!mkdtemp(dir))
		fuzz_fail("cannot make a temporary folder");
	snprintf(path, sizeof(path), "%s/pii.key", dir);
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
	if (fd < 0 || fchmod(fd, 0600) < 0 ||
	    write(fd, key, sizeof(key)) != (ssize_t)sizeof(key) || close(fd) < 0)
		fuzz_fail("cannot write the key file '%s'", path);
	if (privacy_master_load(path, &master))
		fuzz_fail("privacy_master_load refused '%s'", path);
	unlink(path);
	rmdir(dir);
	h = privacy_hasher_new(master, workspace_id);
	privacy_master_free(master);
	return h;
}

#endif
