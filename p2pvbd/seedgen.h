/* SPDX-License-Identifier: ISC */
/*
 * seedgen: the seed's durable record of the generations it may have
 * published, so that it never publishes a lower one for the same volume,
 * across crashes and restarts (DESIGN rule 7; PROTOCOL.md §9.4).
 *
 * The record (IMAGE.p2pvbd-seed, or in --state-dir) names one volume and a
 * generation R: no generation above R was ever published. Before publishing
 * generation G > R the seed raises R durably (to G plus a step, so that a
 * live source syncs the file once per SEEDGEN_STEP_LIVE generations, not
 * every 100 ms); after a restart it resumes at R + 1, above everything it
 * may have published, and hashes the whole image again. A seed of a fixed
 * image also records the hash of the root it published at R: restarted on
 * the same bytes it publishes that very root again (receipts for it stay
 * good), on other bytes a new generation.
 *
 * File (96 bytes, little-endian, local to one host): magic "P2PVSGN1",
 * u32 version 1, u32 reserved 0, volume_id[16], u64 R at offset 32 (one
 * aligned 8-byte write when raised), u64 root_gen at 40 and root_hash[32]
 * at 48 (the root published at root_gen by a seed of a fixed image; all
 * zero if none), 16 reserved zero bytes.
 */
#ifndef P2PVBD_SEEDGEN_H
#define P2PVBD_SEEDGEN_H

#include <stdint.h>

#include "manifest.h"

#define SEEDGEN_SUFFIX    ".p2pvbd-seed"
#define SEEDGEN_LEN       96
#define SEEDGEN_STEP_LIVE 1024

struct seedgen;

/* What a record says about a volume. */
struct seedgen_info {
	uint8_t volume_id[MANIFEST_ID_LEN];
	uint64_t reserved; /* R */
	uint64_t root_gen;
	uint8_t root_hash[VCRYPTO_HASH_LEN]; /* all zero: none */
};

/*
 * Open (or create) the record at path for volume_id. *known is 1 if the
 * record names this volume (info then says what it holds; the first
 * generation to publish is above info->reserved, or info->root_gen again
 * for the same root), 0 if the volume is new here (the record now names it,
 * with R = 0: publish from 0). step: how far beyond a published generation
 * R is raised (SEEDGEN_STEP_LIVE for seed -e, 0 for a seed whose image never
 * changes). 0, or -1 (logged) if the record cannot be read or written; a
 * malformed record is refused, not replaced.
 */
int seedgen_open(const char *path, const uint8_t volume_id[MANIFEST_ID_LEN], uint64_t step,
                 struct seedgen **out, int *known, struct seedgen_info *info);

/* Generation gen is about to be published: make sure R >= gen durably. 0 or -1 (logged). */
int seedgen_reserve(struct seedgen *g, uint64_t gen);

/*
 * A seed of a fixed image publishes the root hash at generation gen (= R):
 * recorded durably, so that a restart on the same bytes publishes it again.
 * 0 or -1 (logged).
 */
int seedgen_set_root(struct seedgen *g, uint64_t gen, const uint8_t hash[VCRYPTO_HASH_LEN]);

/* Pure: decode a record; 0 with info filled, -1 (with a reason) if malformed. */
int seedgen_decode(const uint8_t *buf, size_t len, struct seedgen_info *info, const char **why);
void seedgen_encode(uint8_t buf[SEEDGEN_LEN], const struct seedgen_info *info);

void seedgen_close(struct seedgen *g);

#endif
