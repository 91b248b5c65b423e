/* SPDX-License-Identifier: ISC */
/*
 * libFuzzer harness for signed deltas (manifest_delta_decode and
 * manifest_delta_apply_root): deltas reach every peer from the network and
 * are relayed. Invariants: whatever decodes has its counts and orders within
 * bounds; applying it to a fixed root either fails and leaves the root as it
 * was, or (never, without the source's key) yields a root that verifies.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_signed.h"
#include "manifest.h"
#include "util.h"
#include "vcrypto.h"

static struct manifest_root base_root;
static struct vcrypto_identity id;

static void setup(void)
{
	static int done;
	struct manifest m;
	struct manifest_entry *e;
	uint8_t vol[MANIFEST_ID_LEN] = {1, 2, 3};
	uint32_t n = 2100;

	if (done)
		return;
	done = 1;
	if (vcrypto_init() != 0)
		abort();
	log_init("fuzz", -1);
	vcrypto_identity_generate(&id);
	e = calloc(n, sizeof(*e));
	if (e == NULL || manifest_build(&m, vol, (uint64_t)n * MANIFEST_CHUNK_MIN,
	                                MANIFEST_CHUNK_MIN, 0, e, id.sk) != 0)
		abort();
	base_root = m.root;
	base_root.page_hash = malloc((size_t)m.root.page_count * VCRYPTO_HASH_LEN);
	memcpy(base_root.page_hash, m.root.page_hash, (size_t)m.root.page_count * VCRYPTO_HASH_LEN);
	manifest_free(&m);
}

/* FUZZ_WRITE_SEEDS=DIR: deltas of the fixed volume, from the real encoder. */
static void write_seeds(void)
{
	static const uint32_t chunks[] = {0, 1, 1030, 2099};
	struct manifest_change ch[4];
	struct manifest m;
	struct manifest_entry *e;
	uint8_t vol[MANIFEST_ID_LEN] = {1, 2, 3}, *blob;
	size_t len;
	char name[32];

	setup();
	for (uint32_t n = 0; n <= 4; n += 2) {
		e = xcalloc(2100, sizeof(*e));
		if (manifest_build(&m, vol, 2100ull * MANIFEST_CHUNK_MIN, MANIFEST_CHUNK_MIN, 0, e,
		                   id.sk) != 0)
			abort();
		memset(ch, 0, sizeof(ch));
		for (uint32_t i = 0; i < n; i++) {
			ch[i].chunk = chunks[i];
			ch[i].entry.flags = i == 1 ? MANIFEST_F_ZERO : 0;
			ch[i].entry.hash[0] = (uint8_t)(i + 1);
		}
		if (manifest_delta_make(&m, ch, n, n ? 0 : MANIFEST_ROOT_F_FINAL, id.sk, &blob,
		                        &len) != 0)
			abort();
		snprintf(name, sizeof(name), "changes%u", n);
		fz_seed_write(name, blob, len);
		free(blob);
		manifest_free(&m);
	}
	exit(0);
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	if (fz_seed_dir() != NULL)
		write_seeds();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct manifest_delta d;
	struct manifest_root r;

	setup();
	if (manifest_delta_decode(data, size, &d) != 0)
		return 0;
	/* An empty delta (no changes, no pages) is legal: the freeze only sets FINAL. */
	if (d.nchanges > MANIFEST_DELTA_MAX_CHANGES || d.npages > d.nchanges ||
	    (d.npages == 0) != (d.nchanges == 0) || d.new_gen != d.old_gen + 1 ||
	    (d.root_flags & ~MANIFEST_ROOT_F_ALL) != 0)
		abort();
	for (uint32_t i = 1; i < d.nchanges; i++)
		if (d.changes[i].chunk <= d.changes[i - 1].chunk)
			abort();
	r = base_root;
	r.page_hash = malloc((size_t)base_root.page_count * VCRYPTO_HASH_LEN);
	memcpy(r.page_hash, base_root.page_hash, (size_t)base_root.page_count * VCRYPTO_HASH_LEN);
	if (manifest_delta_apply_root(&r, &d, id.pk) == 0)
		abort(); /* a forgery without the key */
	if (r.generation != base_root.generation ||
	    memcmp(r.page_hash, base_root.page_hash,
	           (size_t)base_root.page_count * VCRYPTO_HASH_LEN) != 0)
		abort(); /* a failed apply changed the root */
	manifest_root_free(&r);
	manifest_delta_free(&d);
	return 0;
}
