/*
 * Memory for the graph's big arrays. A graph over tens of millions of
 * identifiers is a few arrays of hundreds of megabytes read at random; with
 * 4 KiB pages nearly every access also misses the TLB, and huge pages make
 * the whole graph about 40% faster (PERFORMANCE.md). So an array of 2 MiB
 * or more is mapped directly, advised to use transparent huge pages (this
 * machine's setting is "madvise"), and grown with mremap, which moves page
 * tables instead of copying data. Smaller arrays, and every array in a
 * sanitizer build (so that AddressSanitizer sees every access), come from
 * the allocator (jemalloc in release builds).
 */
#define _GNU_SOURCE	/* mremap */
#include "identity/identity_int.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "lib/alloc.h"

#if defined(__SANITIZE_ADDRESS__)
#define USE_MMAP 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(memory_sanitizer)
#define USE_MMAP 0
#endif
#endif
#ifndef USE_MMAP
#define USE_MMAP 1
#endif

#define BIG ((size_t)2 << 20)

static bool is_mapped(size_t bytes)
{
	return USE_MMAP && bytes >= BIG;
}

/* Mapped sizes are whole huge pages, so the tail of one can be advised too. */
static size_t map_size(size_t bytes)
{
	return (bytes + BIG - 1) & ~(BIG - 1);
}

static void map_failed(size_t bytes)
{
	fprintf(stderr, "level=fatal msg=\"out of memory\" bytes=%zu\n", bytes);
	abort();
}

static void *map_new(size_t bytes)
{
	void *p = mmap(NULL, map_size(bytes), PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		map_failed(bytes);
	madvise(p, map_size(bytes), MADV_HUGEPAGE);
	return p;
}

void *idmem_resize(void *p, size_t old_bytes, size_t new_bytes)
{
	void *q;

	if (new_bytes == 0) {
		idmem_free(p, old_bytes);
		return NULL;
	}
	if (!is_mapped(new_bytes)) {
		if (is_mapped(old_bytes)) {
			q = xmalloc(new_bytes);
			memcpy(q, p, new_bytes);
			idmem_free(p, old_bytes);
			return q;
		}
		q = xrealloc(p, new_bytes);
		if (new_bytes > old_bytes)
			memset((char *)q + old_bytes, 0, new_bytes - old_bytes);
		return q;
	}
	if (!is_mapped(old_bytes)) {
		q = map_new(new_bytes);
		if (old_bytes)
			memcpy(q, p, old_bytes);
		free(p);
		return q;
	}
	/*
	 * Bytes of a mapping past its array's size are kept zero (a shrink
	 * clears what it gives up), so growing needs no memset: it would only
	 * make untouched pages resident.
	 */
	if (new_bytes < old_bytes)
		memset((char *)p + new_bytes, 0, old_bytes - new_bytes);
	if (map_size(old_bytes) == map_size(new_bytes))
		return p;
	if ((q = mremap(p, map_size(old_bytes), map_size(new_bytes),
			MREMAP_MAYMOVE)) == MAP_FAILED)
		map_failed(new_bytes);
	madvise(q, map_size(new_bytes), MADV_HUGEPAGE);
	return q;
}

void idmem_free(void *p, size_t bytes)
{
	if (!p)
		return;
	if (is_mapped(bytes))
		munmap(p, map_size(bytes));
	else
		free(p);
}
