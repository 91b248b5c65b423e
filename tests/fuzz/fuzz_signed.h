/* SPDX-License-Identifier: ISC */
/*
 * Shared by the structure-aware harnesses (fuzz_manifest_signed.c,
 * fuzz_delta_signed.c) and the seed writers of the plain ones: a fixed
 * Ed25519 test key derived from a fixed seed, so that a run is reproducible
 * and a crash input replays; small manifests built from the real encoders;
 * and the seed writer (FUZZ_WRITE_SEEDS=DIR: the harness writes its seed
 * inputs into DIR and exits; `make fuzz-seeds` runs it).
 *
 * Everything here is static: each harness is its own program.
 */
#ifndef P2PVBD_FUZZ_SIGNED_H
#define P2PVBD_FUZZ_SIGNED_H

#include <sodium.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "manifest.h"
#include "util.h"
#include "vcrypto.h"

/* The key every signed input is signed with, and another one that must never verify. */
static struct vcrypto_identity fz_key, fz_other;

static inline void fz_keys_init(void)
{
	static const uint8_t seed[32] = "p2pvbd fuzz: fixed test key #1.";
	static const uint8_t other[32] = "p2pvbd fuzz: another key, ne 1.";

	if (vcrypto_init() != 0)
		abort();
	log_init("fuzz", -1);
	if (crypto_sign_seed_keypair(fz_key.pk, fz_key.sk, seed) != 0 ||
	    crypto_sign_seed_keypair(fz_other.pk, fz_other.sk, other) != 0)
		abort();
}

/*
 * Base manifest `which` (mod FZ_NBASES), signed with fz_key:
 *   0: 3 chunks of 64 KiB, the last one short (one page), generation 2;
 *   1: 2100 chunks (three pages, the last of 52 entries), generation 5, final.
 * Entries are deterministic: mixed generations, every seventh chunk zero.
 * m owns what it holds (manifest_free).
 */
#define FZ_NBASES 2

static inline void fz_base_build(struct manifest *m, unsigned which)
{
	static const struct {
		uint32_t chunks;
		uint64_t image_size, gen;
		uint16_t flags;
	} base[FZ_NBASES] = {
	    {3, 2 * MANIFEST_CHUNK_MIN + 4097, 2, 0},
	    {2100, 2100ull * MANIFEST_CHUNK_MIN, 5, MANIFEST_ROOT_F_FINAL},
	};
	const uint8_t vol[MANIFEST_ID_LEN] = {'f', 'u', 'z', 'z', (uint8_t)which};
	unsigned b = which % FZ_NBASES;
	struct manifest_entry *e = xcalloc(base[b].chunks, sizeof(*e));

	for (uint32_t i = 0; i < base[b].chunks; i++) {
		e[i].gen = i % (base[b].gen + 1);
		e[i].flags = i % 7 == 3 ? MANIFEST_F_ZERO : 0;
		for (int k = 0; k < VCRYPTO_HASH_LEN; k++)
			e[i].hash[k] = (uint8_t)(i * 31 + k);
	}
	if (manifest_build(m, vol, base[b].image_size, MANIFEST_CHUNK_MIN, base[b].gen, e,
	                   fz_key.sk) != 0)
		abort();
	if (base[b].flags)
		manifest_set_flags(m, base[b].flags, fz_key.sk);
}

/* A deep copy of a root (r owns its page hashes afterwards). */
static inline void fz_root_copy(struct manifest_root *r, const struct manifest_root *from)
{
	*r = *from;
	r->page_hash = xmalloc((size_t)from->page_count * VCRYPTO_HASH_LEN);
	memcpy(r->page_hash, from->page_hash, (size_t)from->page_count * VCRYPTO_HASH_LEN);
}

/* A deep copy of a manifest. */
static inline void fz_manifest_copy(struct manifest *m, const struct manifest *from)
{
	fz_root_copy(&m->root, &from->root);
	m->entries = xmalloc((size_t)from->root.chunk_count * sizeof(*m->entries));
	memcpy(m->entries, from->entries, (size_t)from->root.chunk_count * sizeof(*m->entries));
}

/* The directory seeds go to, or NULL when the harness fuzzes. */
static inline const char *fz_seed_dir(void)
{
	return getenv("FUZZ_WRITE_SEEDS");
}

/* Write one seed input DIR/NAME (a failure stops the program: seeds are written on purpose). */
static inline void fz_seed_write(const char *name, const uint8_t *p, size_t n)
{
	char path[4096];
	FILE *f;

	snprintf(path, sizeof(path), "%s/%s", fz_seed_dir(), name);
	f = fopen(path, "wb");
	if (f == NULL || fwrite(p, 1, n, f) != n || fclose(f) != 0) {
		fprintf(stderr, "cannot write seed %s\n", path);
		exit(1);
	}
}

#endif
