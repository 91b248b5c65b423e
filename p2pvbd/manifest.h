/* SPDX-License-Identifier: ISC */
/*
 * manifest: what a volume is, signed by its source. Pure code, no I/O.
 *
 * The chunk table (per chunk: generation, flags, BLAKE2b-256 hash) is split
 * into pages of MANIFEST_PAGE_ENTRIES entries. The signed *root* holds the
 * volume's parameters and the hash of every page, so a destination verifies
 * the root once (small: 32 bytes per 1024 chunks) and then fetches and
 * verifies only the pages it needs. A later delta (generation G -> G+1)
 * carries the changed entries and the new hashes of the pages they touch,
 * signed with the new root hash; see PROTOCOL.md.
 *
 * Byte layouts are in proto/PROTOCOL.md, "Manifest".
 */
#ifndef P2PVBD_MANIFEST_H
#define P2PVBD_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "vcrypto.h"

#define MANIFEST_MAGIC         "P2PVMAN1" /* 8 bytes */
#define MANIFEST_VERSION       1
#define MANIFEST_ID_LEN        16
#define MANIFEST_PAGE_ENTRIES  1024u
#define MANIFEST_ENTRY_LEN     48u /* u64 gen, u32 flags, u32 reserved, hash[32] */
#define MANIFEST_ROOT_HDR_LEN  64u /* fixed part of the root before the page hashes */
#define MANIFEST_CHUNK_MIN     (64u * 1024u)
#define MANIFEST_CHUNK_MAX     (4u * 1024u * 1024u)
#define MANIFEST_CHUNK_DEFAULT (256u * 1024u)
/* Bounded so that a root fits one protocol message (WIRE_MAX_MSG, less 1 byte of type). */
#define MANIFEST_MAX_PAGES  ((1024u * 1024u - 1u - MANIFEST_ROOT_HDR_LEN - 64u) / 32u)
#define MANIFEST_MAX_CHUNKS ((uint64_t)MANIFEST_MAX_PAGES * MANIFEST_PAGE_ENTRIES)

/* Signature domains (see vcrypto_sign). */
#define MANIFEST_ROOT_DOMAIN    "p2pvbd-manifest-root-v1"
#define MANIFEST_RECEIPT_DOMAIN "p2pvbd-receipt-v2"

/* Entry flags */
#define MANIFEST_F_ZERO 0x1u /* chunk is all zero bytes: never transferred */

/*
 * Root flags. FINAL: the source is frozen; this generation is the one a
 * destination's VM may run on (reads wait for it). A seed without a VM of
 * its own publishes a final root at once.
 */
#define MANIFEST_ROOT_F_FINAL 0x1u
/*
 * The source acknowledges a VM write only once a destination holds it
 * (seed -e --write-through): destinations fetch changed chunks at once,
 * not after the stable ones (PROTOCOL.md §7.2).
 */
#define MANIFEST_ROOT_F_WRITE_THROUGH 0x2u
#define MANIFEST_ROOT_F_ALL           (MANIFEST_ROOT_F_FINAL | MANIFEST_ROOT_F_WRITE_THROUGH)

struct manifest_entry {
	uint64_t gen;
	uint32_t flags;
	uint8_t hash[VCRYPTO_HASH_LEN]; /* BLAKE2b-256 of the chunk's bytes (zero chunks too) */
};

/* The signed root. page_hash is owned by the struct (manifest_root_free). */
struct manifest_root {
	uint16_t version;
	uint8_t volume_id[MANIFEST_ID_LEN];
	uint64_t image_size;
	uint32_t chunk_size;
	uint64_t generation;
	uint16_t flags;       /* MANIFEST_ROOT_F_* */
	uint32_t chunk_count; /* derived: ceil(image_size / chunk_size) */
	uint32_t page_count;  /* derived: ceil(chunk_count / MANIFEST_PAGE_ENTRIES) */
	uint8_t (*page_hash)[VCRYPTO_HASH_LEN];
	uint8_t root_hash[VCRYPTO_HASH_LEN]; /* BLAKE2b-256 of the unsigned encoding */
	uint8_t sig[VCRYPTO_SIG_LEN];
};

/* The whole table, as the source holds it. entries is owned. */
struct manifest {
	struct manifest_root root;
	struct manifest_entry *entries; /* root.chunk_count */
};

/* Chunk geometry. */
uint32_t manifest_chunk_count(uint64_t image_size, uint32_t chunk_size);
uint32_t manifest_chunk_len(const struct manifest_root *r, uint32_t chunk);
uint32_t manifest_page_len(const struct manifest_root *r, uint32_t page); /* entries in page */
int manifest_chunk_size_valid(uint32_t chunk_size); /* power of two in [MIN, MAX] */

/*
 * Build the full manifest from entries (ownership of entries passes to m),
 * compute page hashes and the root hash, and sign with sk. 0 or -1 (bad
 * parameters, too many chunks).
 */
int manifest_build(struct manifest *m, const uint8_t volume_id[MANIFEST_ID_LEN],
                   uint64_t image_size, uint32_t chunk_size, uint64_t generation,
                   struct manifest_entry *entries, const uint8_t sk[VCRYPTO_SK_LEN]);
void manifest_free(struct manifest *m);
/* Set the root's flags (MANIFEST_ROOT_F_*) and sign it again. */
void manifest_set_flags(struct manifest *m, uint16_t flags, const uint8_t sk[VCRYPTO_SK_LEN]);

/*
 * Encoded root (including signature). encode allocates *out (caller frees).
 * decode checks structure strictly and fills r (allocating page_hash) and
 * computes r->root_hash; it does not check the signature. 0 or -1.
 */
int manifest_root_encode(const struct manifest_root *r, uint8_t **out, size_t *len);
int manifest_root_decode(const uint8_t *in, size_t len, struct manifest_root *r);
/* 0 if r's signature is valid for pk, else -1. */
int manifest_root_verify(const struct manifest_root *r, const uint8_t pk[VCRYPTO_PK_LEN]);
void manifest_root_free(struct manifest_root *r);

/* One page: encode page `page` of m into out (manifest_page_len(page) * ENTRY_LEN bytes). */
size_t manifest_page_encode(const struct manifest *m, uint32_t page, uint8_t *out, size_t cap);
/*
 * Decode and verify a page against the root: length exact, hash matches
 * r->page_hash[page], entries well-formed (reserved zero, unknown flags
 * zero, generation <= root generation). out has room for
 * MANIFEST_PAGE_ENTRIES. 0 or -1.
 */
int manifest_page_decode(const struct manifest_root *r, uint32_t page, const uint8_t *in,
                         size_t len, struct manifest_entry *out);

/*
 * Completion receipt: the holder `signer` states that it holds volume
 * `volume_id` complete at `generation`, whose root hash is `root_hash`. The
 * signature proves who says so; the MAC, keyed by a value derived from the
 * volume's join secret (manifest_receipt_key), proves that the signer is a
 * member of the volume: whoever lacks the secret (a tracker, an eavesdropper)
 * can neither make a receipt nor put another signer on a genuine one.
 * Layout: PROTOCOL.md §10.
 */
/* magic 8, id 16, gen 8, root 32, time 8, signer 32, sig 64, mac 32 */
#define MANIFEST_RECEIPT_LEN    200
#define MANIFEST_RECEIPT_V1_LEN 168 /* the retired format without the MAC: refused */
/* The vcrypto_derive label of the receipt MAC key. */
#define MANIFEST_RECEIPT_MAC_LABEL "p2pvbd-receipt-mac-v2"
struct manifest_receipt {
	uint8_t volume_id[MANIFEST_ID_LEN];
	uint64_t generation;
	uint8_t root_hash[VCRYPTO_HASH_LEN];
	uint64_t timestamp; /* seconds since the epoch, informational */
	uint8_t signer[VCRYPTO_PK_LEN];
	uint8_t sig[VCRYPTO_SIG_LEN];
	uint8_t mac[VCRYPTO_MAC_LEN];
};
/* The MAC key of a volume's receipts, derived from its join secret. */
void manifest_receipt_key(uint8_t key[VCRYPTO_KEY_LEN], const uint8_t secret[VCRYPTO_SECRET_LEN]);
/* Set signer, sig and mac: signed by id, MACed with key (manifest_receipt_key). */
void manifest_receipt_sign(struct manifest_receipt *rc, const struct vcrypto_identity *id,
                           const uint8_t key[VCRYPTO_KEY_LEN]);
void manifest_receipt_encode(const struct manifest_receipt *rc, uint8_t out[MANIFEST_RECEIPT_LEN]);
/*
 * Structure and signature, and the MAC if key is not NULL (a tracker has no
 * key: it cannot check the MAC). 0, or -1 with a reason for humans in *why
 * (static text; why may be NULL). The retired format (P2PVRCP1, no MAC) is
 * refused with a reason saying so.
 */
int manifest_receipt_decode(const uint8_t *in, size_t len, const uint8_t *key,
                            struct manifest_receipt *rc, const char **why);

/*
 * Deltas: the source moves its manifest from generation G to G + 1 (the
 * chunks its VM changed get new entries). The signed delta carries the
 * changed entries, the new hashes of the pages they touch, the new root hash
 * and the new root's own signature, so that a receiver can rebuild the signed
 * root of G + 1 without the whole table. Layout: PROTOCOL.md §9.
 */
#define MANIFEST_DELTA_MAGIC  "P2PVDLT1"
#define MANIFEST_DELTA_DOMAIN "p2pvbd-delta-v1"
#define MANIFEST_DELTA_HDR    84u /* before the changes */
#define MANIFEST_CHANGE_LEN   52u /* u32 chunk + entry */
#define MANIFEST_DPAGE_LEN    36u /* u32 page + hash */
/* One delta fits one protocol message. */
#define MANIFEST_DELTA_MAX_CHANGES 16384u

struct manifest_change {
	uint32_t chunk;
	struct manifest_entry entry; /* entry.gen is the delta's new generation */
};

struct manifest_delta {
	uint8_t volume_id[MANIFEST_ID_LEN];
	uint64_t old_gen, new_gen;
	uint16_t root_flags; /* the new root's flags (MANIFEST_ROOT_F_FINAL) */
	uint8_t new_root_hash[VCRYPTO_HASH_LEN];
	uint32_t nchanges;
	struct manifest_change *changes; /* owned, ascending chunk */
	uint32_t npages;
	uint32_t *page;                         /* owned, ascending */
	uint8_t (*page_hash)[VCRYPTO_HASH_LEN]; /* owned, one per page */
	uint8_t root_sig[VCRYPTO_SIG_LEN];      /* the new root's signature (§8.1) */
	uint8_t sig[VCRYPTO_SIG_LEN];           /* over everything before it */
};

/*
 * Source side: apply n changes (ascending chunk indexes; each entry's gen is
 * ignored and set to the new generation; n may be 0: only the flags change)
 * to m: its entries, page hashes, generation, flags, root hash and root
 * signature; and encode the signed delta into *blob (allocated; the caller
 * frees it). 0 or -1 (bad changes; m untouched).
 */
int manifest_delta_make(struct manifest *m, const struct manifest_change *ch, uint32_t n,
                        uint16_t root_flags, const uint8_t sk[VCRYPTO_SK_LEN], uint8_t **blob,
                        size_t *len);
/* Strict structural decode (no signature check); allocates d's arrays. 0 or -1. */
int manifest_delta_decode(const uint8_t *in, size_t len, struct manifest_delta *d);
/*
 * Receiver side: d must follow r (same volume, old_gen == r's generation,
 * pages exactly those the changes touch, within the volume), be signed by
 * pk, and produce a root whose hash is new_root_hash and whose signature
 * verifies. Then r becomes the root of the new generation (page hashes,
 * generation, root hash, signature). 0, or -1 with r untouched.
 */
int manifest_delta_apply_root(struct manifest_root *r, const struct manifest_delta *d,
                              const uint8_t pk[VCRYPTO_PK_LEN]);
void manifest_delta_free(struct manifest_delta *d);
/* Hash of n encoded entries (a page's hash), for checking held pages against a delta. */
void manifest_entries_hash(const struct manifest_entry *e, uint32_t n,
                           uint8_t out[VCRYPTO_HASH_LEN]);
/* Encode n entries (n * MANIFEST_ENTRY_LEN bytes): a page's bytes. */
void manifest_entries_encode(const struct manifest_entry *e, uint32_t n, uint8_t *out);

/*
 * The BitTorrent info_hash under which a volume's peers meet at a tracker:
 * the first 20 bytes of BLAKE2b-256("p2pvbd-infohash-v1" || volume id).
 * Needs vcrypto_init() first.
 */
#define MANIFEST_INFOHASH_LEN    20
#define MANIFEST_INFOHASH_DOMAIN "p2pvbd-infohash-v1"
void manifest_infohash(const uint8_t id[MANIFEST_ID_LEN], uint8_t out[MANIFEST_INFOHASH_LEN]);

#endif
