/* SPDX-License-Identifier: ISC */
/*
 * manifest: chunk geometry, the signed root, pages of the chunk table and
 * completion receipts. Pure code: bytes in, structures out (and back). The
 * byte layouts are in proto/PROTOCOL.md, "Manifest".
 */
#include "manifest.h"

#include <stdlib.h>
#include <string.h>

#include "util.h"
#include "wire.h"

_Static_assert(WIRE_PAGE_ENTRY_LEN == MANIFEST_ENTRY_LEN, "a PAGE carries manifest entries");
_Static_assert(WIRE_PAGE_MAX_ENTRIES == MANIFEST_PAGE_ENTRIES,
               "a PAGE holds one page of the chunk table");

#define MAGIC_LEN          8
#define ROOT_SIG_LEN       VCRYPTO_SIG_LEN
#define RECEIPT_SIGNED_LEN 104 /* the signature covers bytes 0..103 */
#define RECEIPT_MACED_LEN  168 /* the MAC covers bytes 0..167 (with the signature) */
#define RECEIPT_MAGIC      "P2PVRCP2"
#define RECEIPT_MAGIC_V1   "P2PVRCP1" /* retired: no MAC */

_Static_assert(sizeof(MANIFEST_MAGIC) - 1 == MAGIC_LEN, "manifest magic length");
_Static_assert(sizeof(RECEIPT_MAGIC) - 1 == MAGIC_LEN, "receipt magic length");
_Static_assert(sizeof(RECEIPT_MAGIC_V1) - 1 == MAGIC_LEN, "receipt magic length");
/* A root of MANIFEST_MAX_PAGES pages must fit one ROOT message (type byte + blob). */
_Static_assert(1 + MANIFEST_ROOT_HDR_LEN + (uint64_t)MANIFEST_MAX_PAGES * VCRYPTO_HASH_LEN +
                       ROOT_SIG_LEN <=
                   WIRE_MAX_MSG,
               "largest root does not fit a message");
_Static_assert(MANIFEST_MAX_CHUNKS <= UINT32_MAX, "chunk numbers are u32");

/* Offsets in the root header. */
enum {
	RH_MAGIC = 0,
	RH_VERSION = 8,
	RH_FLAGS = 10,
	RH_CHUNK_SIZE = 12,
	RH_IMAGE_SIZE = 16,
	RH_VOLUME_ID = 24,
	RH_GENERATION = 40,
	RH_PAGE_ENTRIES = 48,
	RH_PAGE_COUNT = 52,
	RH_RESERVED = 56,
	RH_END = 64,
};
_Static_assert(RH_END == MANIFEST_ROOT_HDR_LEN, "root header layout");

/* Offsets in a page entry. */
enum {
	PE_GEN = 0,
	PE_FLAGS = 8,
	PE_RESERVED = 12,
	PE_HASH = 16,
	PE_END = 48,
};
_Static_assert(PE_END == MANIFEST_ENTRY_LEN, "page entry layout");

/* Offsets in a receipt. */
enum {
	RC_MAGIC = 0,
	RC_VOLUME_ID = 8,
	RC_GENERATION = 24,
	RC_ROOT_HASH = 32,
	RC_TIMESTAMP = 64,
	RC_SIGNER = 72,
	RC_SIG = 104,
	RC_MAC = 168,
	RC_END = 200,
};
_Static_assert(RC_END == MANIFEST_RECEIPT_LEN, "receipt layout");
_Static_assert(RC_SIG == RECEIPT_SIGNED_LEN, "receipt layout");
_Static_assert(RC_MAC == RECEIPT_MACED_LEN && RC_MAC == MANIFEST_RECEIPT_V1_LEN, "receipt layout");
_Static_assert(RC_END - RC_MAC == VCRYPTO_MAC_LEN, "receipt layout");
_Static_assert(MANIFEST_RECEIPT_LEN == 200, "the length in manifest_receipt_decode's reason");

int manifest_chunk_size_valid(uint32_t chunk_size)
{
	return chunk_size >= MANIFEST_CHUNK_MIN && chunk_size <= MANIFEST_CHUNK_MAX &&
	       (chunk_size & (chunk_size - 1)) == 0;
}

/* ceil(image_size / chunk_size), or 0 if that is 0 or does not fit the limits. */
uint32_t manifest_chunk_count(uint64_t image_size, uint32_t chunk_size)
{
	uint64_t n;

	if (chunk_size == 0 || image_size == 0)
		return 0;
	n = image_size / chunk_size + (image_size % chunk_size != 0);
	if (n > MANIFEST_MAX_CHUNKS)
		return 0;
	return (uint32_t)n;
}

/* Bytes in chunk `chunk`: chunk_size except for a short last chunk; 0 if out of range. */
uint32_t manifest_chunk_len(const struct manifest_root *r, uint32_t chunk)
{
	if (chunk >= r->chunk_count)
		return 0;
	if (chunk + 1 < r->chunk_count)
		return r->chunk_size;
	return (uint32_t)(r->image_size - (uint64_t)chunk * r->chunk_size);
}

/* Entries in page `page`: MANIFEST_PAGE_ENTRIES except for the last page; 0 if out of range. */
uint32_t manifest_page_len(const struct manifest_root *r, uint32_t page)
{
	uint64_t first = (uint64_t)page * MANIFEST_PAGE_ENTRIES;

	if (page >= r->page_count || first >= r->chunk_count)
		return 0;
	if (r->chunk_count - first < MANIFEST_PAGE_ENTRIES)
		return (uint32_t)(r->chunk_count - first);
	return MANIFEST_PAGE_ENTRIES;
}

static uint32_t page_count_for(uint32_t chunk_count)
{
	return (uint32_t)(((uint64_t)chunk_count + MANIFEST_PAGE_ENTRIES - 1) /
	                  MANIFEST_PAGE_ENTRIES);
}

/*
 * Check the volume parameters and derive the counts. Used by build, encode
 * and decode alike, so that nothing can encode a root that decode refuses.
 * 0 or -1 (logged).
 */
static int geometry(uint64_t image_size, uint32_t chunk_size, uint32_t *chunk_count,
                    uint32_t *page_count)
{
	if (!manifest_chunk_size_valid(chunk_size)) {
		log_warn("manifest: chunk size %u is not a power of two in [%u, %u]", chunk_size,
		         MANIFEST_CHUNK_MIN, MANIFEST_CHUNK_MAX);
		return -1;
	}
	if (image_size == 0) {
		log_warn("manifest: image size is zero");
		return -1;
	}
	*chunk_count = manifest_chunk_count(image_size, chunk_size);
	if (*chunk_count == 0) {
		log_warn("manifest: image size %llu needs more than %llu chunks of %u bytes",
		         (unsigned long long)image_size, (unsigned long long)MANIFEST_MAX_CHUNKS,
		         chunk_size);
		return -1;
	}
	*page_count = page_count_for(*chunk_count);
	return 0;
}

/* The fixed 64-byte header of the root, from r's parameters. */
static void root_header_encode(const struct manifest_root *r, uint8_t out[MANIFEST_ROOT_HDR_LEN])
{
	memcpy(out + RH_MAGIC, MANIFEST_MAGIC, MAGIC_LEN);
	wire_put16(out + RH_VERSION, r->version);
	wire_put16(out + RH_FLAGS, r->flags);
	wire_put32(out + RH_CHUNK_SIZE, r->chunk_size);
	wire_put64(out + RH_IMAGE_SIZE, r->image_size);
	memcpy(out + RH_VOLUME_ID, r->volume_id, MANIFEST_ID_LEN);
	wire_put64(out + RH_GENERATION, r->generation);
	wire_put32(out + RH_PAGE_ENTRIES, MANIFEST_PAGE_ENTRIES);
	wire_put32(out + RH_PAGE_COUNT, r->page_count);
	memset(out + RH_RESERVED, 0, RH_END - RH_RESERVED);
}

/* root_hash = BLAKE2b-256(header || page hashes): what the signature covers. */
static void root_hash_compute(const struct manifest_root *r, uint8_t out[VCRYPTO_HASH_LEN])
{
	uint8_t hdr[MANIFEST_ROOT_HDR_LEN];
	struct vcrypto_hash_state st;

	root_header_encode(r, hdr);
	vcrypto_hash_init(&st);
	vcrypto_hash_update(&st, hdr, sizeof(hdr));
	vcrypto_hash_update(&st, r->page_hash, (size_t)r->page_count * VCRYPTO_HASH_LEN);
	vcrypto_hash_final(&st, out);
}

static void entry_encode(const struct manifest_entry *e, uint8_t out[MANIFEST_ENTRY_LEN])
{
	wire_put64(out + PE_GEN, e->gen);
	wire_put32(out + PE_FLAGS, e->flags);
	wire_put32(out + PE_RESERVED, 0);
	memcpy(out + PE_HASH, e->hash, VCRYPTO_HASH_LEN);
}

/* Encode entries [first, first + n) of a table into out (n * ENTRY_LEN bytes). */
void manifest_entries_encode(const struct manifest_entry *e, uint32_t n, uint8_t *out)
{
	for (uint32_t i = 0; i < n; i++)
		entry_encode(&e[i], out + (size_t)i * MANIFEST_ENTRY_LEN);
}

/*
 * Takes ownership of entries (root.chunk_count of them) in every case: on
 * failure they are freed and m is left empty, so a caller never has to
 * guess whether to free them.
 */
int manifest_build(struct manifest *m, const uint8_t volume_id[MANIFEST_ID_LEN],
                   uint64_t image_size, uint32_t chunk_size, uint64_t generation,
                   struct manifest_entry *entries, const uint8_t sk[VCRYPTO_SK_LEN])
{
	struct manifest_root *r = &m->root;
	uint8_t *page;

	memset(m, 0, sizeof(*m));
	if (entries == NULL) {
		log_error("manifest: build without entries");
		return -1;
	}
	if (geometry(image_size, chunk_size, &r->chunk_count, &r->page_count) < 0)
		goto fail;
	/* Refuse here what every receiver's page decoder would refuse. */
	for (uint32_t i = 0; i < r->chunk_count; i++) {
		if (entries[i].flags & ~MANIFEST_F_ZERO) {
			log_error("manifest: chunk %u has unknown flags 0x%x", i, entries[i].flags);
			goto fail;
		}
		if (entries[i].gen > generation) {
			log_error("manifest: chunk %u generation %llu is after the volume's %llu",
			          i, (unsigned long long)entries[i].gen,
			          (unsigned long long)generation);
			goto fail;
		}
	}
	r->version = MANIFEST_VERSION;
	memcpy(r->volume_id, volume_id, MANIFEST_ID_LEN);
	r->image_size = image_size;
	r->chunk_size = chunk_size;
	r->generation = generation;
	r->page_hash = xcalloc(r->page_count, VCRYPTO_HASH_LEN);
	m->entries = entries;

	page = xmalloc((size_t)MANIFEST_PAGE_ENTRIES * MANIFEST_ENTRY_LEN);
	for (uint32_t p = 0; p < r->page_count; p++) {
		uint32_t n = manifest_page_len(r, p);

		manifest_entries_encode(entries + (size_t)p * MANIFEST_PAGE_ENTRIES, n, page);
		vcrypto_hash(r->page_hash[p], page, (size_t)n * MANIFEST_ENTRY_LEN);
	}
	free(page);
	root_hash_compute(r, r->root_hash);
	vcrypto_sign(r->sig, MANIFEST_ROOT_DOMAIN, r->root_hash, VCRYPTO_HASH_LEN, sk);
	return 0;
fail:
	free(entries);
	memset(m, 0, sizeof(*m));
	return -1;
}

void manifest_set_flags(struct manifest *m, uint16_t flags, const uint8_t sk[VCRYPTO_SK_LEN])
{
	m->root.flags = flags;
	root_hash_compute(&m->root, m->root.root_hash);
	vcrypto_sign(m->root.sig, MANIFEST_ROOT_DOMAIN, m->root.root_hash, VCRYPTO_HASH_LEN, sk);
}

void manifest_free(struct manifest *m)
{
	manifest_root_free(&m->root);
	free(m->entries);
	m->entries = NULL;
}

/* Allocates *out (the caller frees it). */
int manifest_root_encode(const struct manifest_root *r, uint8_t **out, size_t *len)
{
	uint32_t chunks, pages;
	size_t n;
	uint8_t *buf;

	if (geometry(r->image_size, r->chunk_size, &chunks, &pages) < 0)
		return -1;
	if (r->version != MANIFEST_VERSION || chunks != r->chunk_count || pages != r->page_count ||
	    r->page_hash == NULL) {
		log_error("manifest: root to encode is inconsistent");
		return -1;
	}
	n = MANIFEST_ROOT_HDR_LEN + (size_t)pages * VCRYPTO_HASH_LEN + ROOT_SIG_LEN;
	buf = xmalloc(n);
	root_header_encode(r, buf);
	memcpy(buf + MANIFEST_ROOT_HDR_LEN, r->page_hash, (size_t)pages * VCRYPTO_HASH_LEN);
	memcpy(buf + n - ROOT_SIG_LEN, r->sig, ROOT_SIG_LEN);
	*out = buf;
	*len = n;
	return 0;
}

static int all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i])
			return 0;
	return 1;
}

/* Allocates r->page_hash on success (manifest_root_free releases it). */
int manifest_root_decode(const uint8_t *in, size_t len, struct manifest_root *r)
{
	uint32_t chunk_size, page_entries, page_count, chunks, pages;
	uint64_t image_size;
	uint16_t version, flags;

	memset(r, 0, sizeof(*r));
	if (len < MANIFEST_ROOT_HDR_LEN + ROOT_SIG_LEN) {
		log_warn("manifest: root of %zu bytes is too short", len);
		return -1;
	}
	if (memcmp(in + RH_MAGIC, MANIFEST_MAGIC, MAGIC_LEN) != 0) {
		log_warn("manifest: root has bad magic");
		return -1;
	}
	version = wire_get16(in + RH_VERSION);
	flags = wire_get16(in + RH_FLAGS);
	chunk_size = wire_get32(in + RH_CHUNK_SIZE);
	image_size = wire_get64(in + RH_IMAGE_SIZE);
	page_entries = wire_get32(in + RH_PAGE_ENTRIES);
	page_count = wire_get32(in + RH_PAGE_COUNT);
	if (version != MANIFEST_VERSION) {
		log_warn("manifest: root version %u not supported", version);
		return -1;
	}
	if (flags & ~MANIFEST_ROOT_F_ALL) {
		log_warn("manifest: root has unknown flags 0x%x", flags);
		return -1;
	}
	if (!all_zero(in + RH_RESERVED, RH_END - RH_RESERVED)) {
		log_warn("manifest: root reserved bytes are not zero");
		return -1;
	}
	if (page_entries != MANIFEST_PAGE_ENTRIES) {
		log_warn("manifest: root has %u entries per page, expected %u", page_entries,
		         MANIFEST_PAGE_ENTRIES);
		return -1;
	}
	if (geometry(image_size, chunk_size, &chunks, &pages) < 0)
		return -1;
	if (page_count != pages) {
		log_warn("manifest: root says %u pages, the geometry needs %u", page_count, pages);
		return -1;
	}
	/* pages <= MANIFEST_MAX_PAGES (geometry), so this cannot overflow. */
	if (len != MANIFEST_ROOT_HDR_LEN + (size_t)pages * VCRYPTO_HASH_LEN + ROOT_SIG_LEN) {
		log_warn("manifest: root is %zu bytes, %u pages need %zu", len, pages,
		         MANIFEST_ROOT_HDR_LEN + (size_t)pages * VCRYPTO_HASH_LEN + ROOT_SIG_LEN);
		return -1;
	}

	r->version = version;
	memcpy(r->volume_id, in + RH_VOLUME_ID, MANIFEST_ID_LEN);
	r->image_size = image_size;
	r->chunk_size = chunk_size;
	r->generation = wire_get64(in + RH_GENERATION);
	r->flags = flags;
	r->chunk_count = chunks;
	r->page_count = pages;
	r->page_hash = xmalloc((size_t)pages * VCRYPTO_HASH_LEN);
	memcpy(r->page_hash, in + MANIFEST_ROOT_HDR_LEN, (size_t)pages * VCRYPTO_HASH_LEN);
	memcpy(r->sig, in + len - ROOT_SIG_LEN, ROOT_SIG_LEN);
	root_hash_compute(r, r->root_hash);
	return 0;
}

/*
 * The root hash is recomputed rather than taken from r, so that a root whose
 * fields were changed after decoding cannot pass with a stale hash.
 */
int manifest_root_verify(const struct manifest_root *r, const uint8_t pk[VCRYPTO_PK_LEN])
{
	uint8_t h[VCRYPTO_HASH_LEN];
	uint32_t chunks, pages;

	if (r->page_hash == NULL || r->version != MANIFEST_VERSION ||
	    geometry(r->image_size, r->chunk_size, &chunks, &pages) < 0 ||
	    chunks != r->chunk_count || pages != r->page_count) {
		log_warn("manifest: root is inconsistent");
		return -1;
	}
	root_hash_compute(r, h);
	if (vcrypto_memcmp(h, r->root_hash, sizeof(h)) != 0) {
		log_warn("manifest: root hash does not match the root's fields");
		return -1;
	}
	if (vcrypto_verify(r->sig, MANIFEST_ROOT_DOMAIN, h, sizeof(h), pk) < 0) {
		log_warn("manifest: root signature is not valid for the source key");
		return -1;
	}
	return 0;
}

void manifest_root_free(struct manifest_root *r)
{
	free(r->page_hash);
	r->page_hash = NULL;
}

/* Returns the bytes written, or 0 if page is out of range or cap too small. */
size_t manifest_page_encode(const struct manifest *m, uint32_t page, uint8_t *out, size_t cap)
{
	uint32_t n = manifest_page_len(&m->root, page);
	size_t len = (size_t)n * MANIFEST_ENTRY_LEN;

	if (n == 0 || cap < len)
		return 0;
	manifest_entries_encode(m->entries + (size_t)page * MANIFEST_PAGE_ENTRIES, n, out);
	return len;
}

int manifest_page_decode(const struct manifest_root *r, uint32_t page, const uint8_t *in,
                         size_t len, struct manifest_entry *out)
{
	uint32_t n = manifest_page_len(r, page);
	uint8_t h[VCRYPTO_HASH_LEN];

	if (n == 0) {
		log_warn("manifest: page %u is outside the volume (%u pages)", page, r->page_count);
		return -1;
	}
	if (len != (size_t)n * MANIFEST_ENTRY_LEN) {
		log_warn("manifest: page %u is %zu bytes, expected %zu", page, len,
		         (size_t)n * MANIFEST_ENTRY_LEN);
		return -1;
	}
	vcrypto_hash(h, in, len);
	if (vcrypto_memcmp(h, r->page_hash[page], sizeof(h)) != 0) {
		log_warn("manifest: page %u does not match its hash in the root", page);
		return -1;
	}
	/*
	 * The hash matched, so these bytes are what the source signed; still
	 * check them, so that a buggy source cannot hand us entries we would
	 * misread.
	 */
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *p = in + (size_t)i * MANIFEST_ENTRY_LEN;
		struct manifest_entry *e = &out[i];

		e->gen = wire_get64(p + PE_GEN);
		e->flags = wire_get32(p + PE_FLAGS);
		if (wire_get32(p + PE_RESERVED) != 0 || (e->flags & ~MANIFEST_F_ZERO)) {
			log_warn("manifest: page %u entry %u has unknown flags or reserved bits",
			         page, i);
			return -1;
		}
		if (e->gen > r->generation) {
			log_warn("manifest: page %u entry %u generation %llu is after the root's "
			         "%llu",
			         page, i, (unsigned long long)e->gen,
			         (unsigned long long)r->generation);
			return -1;
		}
		memcpy(e->hash, p + PE_HASH, VCRYPTO_HASH_LEN);
	}
	return 0;
}

void manifest_receipt_key(uint8_t key[VCRYPTO_KEY_LEN], const uint8_t secret[VCRYPTO_SECRET_LEN])
{
	vcrypto_derive(key, secret, MANIFEST_RECEIPT_MAC_LABEL);
}

/* The 104 signed bytes, the signature, then the MAC. */
void manifest_receipt_encode(const struct manifest_receipt *rc, uint8_t out[MANIFEST_RECEIPT_LEN])
{
	memcpy(out + RC_MAGIC, RECEIPT_MAGIC, MAGIC_LEN);
	memcpy(out + RC_VOLUME_ID, rc->volume_id, MANIFEST_ID_LEN);
	wire_put64(out + RC_GENERATION, rc->generation);
	memcpy(out + RC_ROOT_HASH, rc->root_hash, VCRYPTO_HASH_LEN);
	wire_put64(out + RC_TIMESTAMP, rc->timestamp);
	memcpy(out + RC_SIGNER, rc->signer, VCRYPTO_PK_LEN);
	memcpy(out + RC_SIG, rc->sig, VCRYPTO_SIG_LEN);
	memcpy(out + RC_MAC, rc->mac, VCRYPTO_MAC_LEN);
}

void manifest_receipt_sign(struct manifest_receipt *rc, const struct vcrypto_identity *id,
                           const uint8_t key[VCRYPTO_KEY_LEN])
{
	uint8_t buf[MANIFEST_RECEIPT_LEN];

	memcpy(rc->signer, id->pk, VCRYPTO_PK_LEN);
	manifest_receipt_encode(rc, buf);
	vcrypto_sign(rc->sig, MANIFEST_RECEIPT_DOMAIN, buf, RECEIPT_SIGNED_LEN, id->sk);
	memcpy(buf + RC_SIG, rc->sig, VCRYPTO_SIG_LEN);
	vcrypto_mac(rc->mac, key, buf, RECEIPT_MACED_LEN);
}

int manifest_receipt_decode(const uint8_t *in, size_t len, const uint8_t *key,
                            struct manifest_receipt *rc, const char **why)
{
	const char *dummy;

	if (why == NULL)
		why = &dummy;
	memset(rc, 0, sizeof(*rc));
	if (len == MANIFEST_RECEIPT_V1_LEN && memcmp(in, RECEIPT_MAGIC_V1, MAGIC_LEN) == 0) {
		*why = "receipt in the retired format P2PVRCP1, which does not prove membership of "
		       "the volume: upgrade p2pvbd on the destination";
		return -1;
	}
	if (len != MANIFEST_RECEIPT_LEN) {
		*why = "a receipt is 200 bytes"; /* MANIFEST_RECEIPT_LEN */
		return -1;
	}
	if (memcmp(in + RC_MAGIC, RECEIPT_MAGIC, MAGIC_LEN) != 0) {
		*why = "not a receipt (bad magic)";
		return -1;
	}
	if (vcrypto_verify(in + RC_SIG, MANIFEST_RECEIPT_DOMAIN, in, RECEIPT_SIGNED_LEN,
	                   in + RC_SIGNER) < 0) {
		*why = "the receipt's signature does not verify under its signer";
		return -1;
	}
	if (key != NULL && vcrypto_mac_verify(in + RC_MAC, key, in, RECEIPT_MACED_LEN) < 0) {
		*why = "the receipt's MAC does not verify: its signer did not prove the volume's "
		       "join secret";
		return -1;
	}
	memcpy(rc->volume_id, in + RC_VOLUME_ID, MANIFEST_ID_LEN);
	rc->generation = wire_get64(in + RC_GENERATION);
	memcpy(rc->root_hash, in + RC_ROOT_HASH, VCRYPTO_HASH_LEN);
	rc->timestamp = wire_get64(in + RC_TIMESTAMP);
	memcpy(rc->signer, in + RC_SIGNER, VCRYPTO_PK_LEN);
	memcpy(rc->sig, in + RC_SIG, VCRYPTO_SIG_LEN);
	memcpy(rc->mac, in + RC_MAC, VCRYPTO_MAC_LEN);
	return 0;
}

void manifest_infohash(const uint8_t id[MANIFEST_ID_LEN], uint8_t out[MANIFEST_INFOHASH_LEN])
{
	static const char domain[] = MANIFEST_INFOHASH_DOMAIN;
	uint8_t msg[sizeof(domain) - 1 + MANIFEST_ID_LEN];
	uint8_t h[VCRYPTO_HASH_LEN];

	memcpy(msg, domain, sizeof(domain) - 1);
	memcpy(msg + sizeof(domain) - 1, id, MANIFEST_ID_LEN);
	vcrypto_hash(h, msg, sizeof(msg));
	memcpy(out, h, MANIFEST_INFOHASH_LEN);
}

/* ---- Deltas ------------------------------------------------------------ */

/* Delta header layout (PROTOCOL.md §9). */
enum {
	DH_MAGIC = 0,
	DH_VOLUME_ID = 8,
	DH_OLD_GEN = 24,
	DH_NEW_GEN = 32,
	DH_FLAGS = 40,
	DH_RESERVED = 42,
	DH_NCHANGES = 44,
	DH_NPAGES = 48,
	DH_ROOT_HASH = 52,
	DH_END = 84,
};
_Static_assert(DH_END == MANIFEST_DELTA_HDR, "delta header layout");

static size_t delta_len(uint32_t nchanges, uint32_t npages)
{
	return MANIFEST_DELTA_HDR + (size_t)nchanges * MANIFEST_CHANGE_LEN +
	       (size_t)npages * MANIFEST_DPAGE_LEN + 2 * VCRYPTO_SIG_LEN;
}

void manifest_entries_hash(const struct manifest_entry *e, uint32_t n,
                           uint8_t out[VCRYPTO_HASH_LEN])
{
	uint8_t *buf = xmalloc((size_t)n * MANIFEST_ENTRY_LEN + 1);

	manifest_entries_encode(e, n, buf);
	vcrypto_hash(out, buf, (size_t)n * MANIFEST_ENTRY_LEN);
	free(buf);
}

int manifest_delta_make(struct manifest *m, const struct manifest_change *ch, uint32_t n,
                        uint16_t root_flags, const uint8_t sk[VCRYPTO_SK_LEN], uint8_t **blob,
                        size_t *len)
{
	struct manifest_root *r = &m->root;
	uint64_t new_gen = r->generation + 1;
	uint32_t npages = 0, last_page = UINT32_MAX;
	uint8_t *out, *p;
	size_t total;

	if (n > MANIFEST_DELTA_MAX_CHANGES || (root_flags & ~MANIFEST_ROOT_F_ALL))
		return -1;
	for (uint32_t i = 0; i < n; i++) {
		if (ch[i].chunk >= r->chunk_count || (i > 0 && ch[i].chunk <= ch[i - 1].chunk) ||
		    (ch[i].entry.flags & ~MANIFEST_F_ZERO))
			return -1;
		if (ch[i].chunk / MANIFEST_PAGE_ENTRIES != last_page) {
			last_page = ch[i].chunk / MANIFEST_PAGE_ENTRIES;
			npages++;
		}
	}
	for (uint32_t i = 0; i < n; i++) {
		m->entries[ch[i].chunk] = ch[i].entry;
		m->entries[ch[i].chunk].gen = new_gen;
	}
	r->generation = new_gen;
	r->flags = root_flags;
	total = delta_len(n, npages);
	out = xcalloc(1, total);
	memcpy(out + DH_MAGIC, MANIFEST_DELTA_MAGIC, MAGIC_LEN);
	memcpy(out + DH_VOLUME_ID, r->volume_id, MANIFEST_ID_LEN);
	wire_put64(out + DH_OLD_GEN, new_gen - 1);
	wire_put64(out + DH_NEW_GEN, new_gen);
	wire_put16(out + DH_FLAGS, root_flags);
	wire_put32(out + DH_NCHANGES, n);
	wire_put32(out + DH_NPAGES, npages);
	p = out + MANIFEST_DELTA_HDR;
	for (uint32_t i = 0; i < n; i++, p += MANIFEST_CHANGE_LEN) {
		wire_put32(p, ch[i].chunk);
		entry_encode(&m->entries[ch[i].chunk], p + 4);
	}
	last_page = UINT32_MAX;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t pg = ch[i].chunk / MANIFEST_PAGE_ENTRIES;

		if (pg == last_page)
			continue;
		last_page = pg;
		manifest_entries_hash(m->entries + (size_t)pg * MANIFEST_PAGE_ENTRIES,
		                      manifest_page_len(r, pg), r->page_hash[pg]);
		wire_put32(p, pg);
		memcpy(p + 4, r->page_hash[pg], VCRYPTO_HASH_LEN);
		p += MANIFEST_DPAGE_LEN;
	}
	root_hash_compute(r, r->root_hash);
	vcrypto_sign(r->sig, MANIFEST_ROOT_DOMAIN, r->root_hash, VCRYPTO_HASH_LEN, sk);
	memcpy(out + DH_ROOT_HASH, r->root_hash, VCRYPTO_HASH_LEN);
	memcpy(p, r->sig, VCRYPTO_SIG_LEN);
	p += VCRYPTO_SIG_LEN;
	vcrypto_sign(p, MANIFEST_DELTA_DOMAIN, out, (size_t)(p - out), sk);
	*blob = out;
	*len = total;
	return 0;
}

void manifest_delta_free(struct manifest_delta *d)
{
	free(d->changes);
	free(d->page);
	free(d->page_hash);
	memset(d, 0, sizeof(*d));
}

int manifest_delta_decode(const uint8_t *in, size_t len, struct manifest_delta *d)
{
	const uint8_t *p;
	uint32_t n, m;

	memset(d, 0, sizeof(*d));
	if (len < delta_len(0, 0) || memcmp(in + DH_MAGIC, MANIFEST_DELTA_MAGIC, MAGIC_LEN) != 0)
		return -1;
	n = wire_get32(in + DH_NCHANGES);
	m = wire_get32(in + DH_NPAGES);
	/* Counts are checked against the length before anything is allocated. */
	if (n > MANIFEST_DELTA_MAX_CHANGES || m > n || (m == 0) != (n == 0) ||
	    len != delta_len(n, m))
		return -1;
	memcpy(d->volume_id, in + DH_VOLUME_ID, MANIFEST_ID_LEN);
	d->old_gen = wire_get64(in + DH_OLD_GEN);
	d->new_gen = wire_get64(in + DH_NEW_GEN);
	d->root_flags = wire_get16(in + DH_FLAGS);
	if (d->old_gen == UINT64_MAX || d->new_gen != d->old_gen + 1 ||
	    (d->root_flags & ~MANIFEST_ROOT_F_ALL) || wire_get16(in + DH_RESERVED) != 0)
		return -1;
	memcpy(d->new_root_hash, in + DH_ROOT_HASH, VCRYPTO_HASH_LEN);
	d->changes = xcalloc(n, sizeof(*d->changes));
	d->page = xcalloc(m, sizeof(*d->page));
	d->page_hash = xcalloc(m, VCRYPTO_HASH_LEN);
	d->nchanges = n;
	d->npages = m;
	p = in + MANIFEST_DELTA_HDR;
	for (uint32_t i = 0; i < n; i++, p += MANIFEST_CHANGE_LEN) {
		struct manifest_change *c = &d->changes[i];

		c->chunk = wire_get32(p);
		c->entry.gen = wire_get64(p + 4 + PE_GEN);
		c->entry.flags = wire_get32(p + 4 + PE_FLAGS);
		memcpy(c->entry.hash, p + 4 + PE_HASH, VCRYPTO_HASH_LEN);
		if ((i > 0 && c->chunk <= d->changes[i - 1].chunk) || c->entry.gen != d->new_gen ||
		    (c->entry.flags & ~MANIFEST_F_ZERO) || wire_get32(p + 4 + PE_RESERVED) != 0)
			goto bad;
	}
	for (uint32_t i = 0; i < m; i++, p += MANIFEST_DPAGE_LEN) {
		d->page[i] = wire_get32(p);
		memcpy(d->page_hash[i], p + 4, VCRYPTO_HASH_LEN);
		if (i > 0 && d->page[i] <= d->page[i - 1])
			goto bad;
	}
	memcpy(d->root_sig, p, VCRYPTO_SIG_LEN);
	memcpy(d->sig, p + VCRYPTO_SIG_LEN, VCRYPTO_SIG_LEN);
	return 0;
bad:
	manifest_delta_free(d);
	return -1;
}

int manifest_delta_apply_root(struct manifest_root *r, const struct manifest_delta *d,
                              const uint8_t pk[VCRYPTO_PK_LEN])
{
	struct manifest_root nr = *r;
	uint8_t *signed_part;
	size_t signed_len;
	uint32_t k = 0;
	int ok;

	if (memcmp(d->volume_id, r->volume_id, MANIFEST_ID_LEN) != 0 || d->old_gen != r->generation)
		return -1;
	/* The pages must be exactly those the changes touch, inside the volume. */
	for (uint32_t i = 0; i < d->nchanges; i++) {
		uint32_t pg = d->changes[i].chunk / MANIFEST_PAGE_ENTRIES;

		if (d->changes[i].chunk >= r->chunk_count)
			return -1;
		if (i > 0 && pg == d->changes[i - 1].chunk / MANIFEST_PAGE_ENTRIES)
			continue;
		if (k >= d->npages || d->page[k] != pg)
			return -1;
		k++;
	}
	if (k != d->npages)
		return -1;
	/* The delta's signature, over its encoding up to the signature. */
	signed_len = delta_len(d->nchanges, d->npages) - VCRYPTO_SIG_LEN;
	signed_part = xmalloc(signed_len);
	{
		uint8_t *p = signed_part;

		memcpy(p + DH_MAGIC, MANIFEST_DELTA_MAGIC, MAGIC_LEN);
		memcpy(p + DH_VOLUME_ID, d->volume_id, MANIFEST_ID_LEN);
		wire_put64(p + DH_OLD_GEN, d->old_gen);
		wire_put64(p + DH_NEW_GEN, d->new_gen);
		wire_put16(p + DH_FLAGS, d->root_flags);
		wire_put16(p + DH_RESERVED, 0);
		wire_put32(p + DH_NCHANGES, d->nchanges);
		wire_put32(p + DH_NPAGES, d->npages);
		memcpy(p + DH_ROOT_HASH, d->new_root_hash, VCRYPTO_HASH_LEN);
		p += MANIFEST_DELTA_HDR;
		for (uint32_t i = 0; i < d->nchanges; i++, p += MANIFEST_CHANGE_LEN) {
			wire_put32(p, d->changes[i].chunk);
			entry_encode(&d->changes[i].entry, p + 4);
		}
		for (uint32_t i = 0; i < d->npages; i++, p += MANIFEST_DPAGE_LEN) {
			wire_put32(p, d->page[i]);
			memcpy(p + 4, d->page_hash[i], VCRYPTO_HASH_LEN);
		}
		memcpy(p, d->root_sig, VCRYPTO_SIG_LEN);
	}
	ok = vcrypto_verify(d->sig, MANIFEST_DELTA_DOMAIN, signed_part, signed_len, pk) == 0;
	free(signed_part);
	if (!ok) {
		log_warn("manifest: delta %llu -> %llu: signature not valid for the source key",
		         (unsigned long long)d->old_gen, (unsigned long long)d->new_gen);
		return -1;
	}
	/* The new root: same parameters, next generation, the listed page hashes. */
	nr.page_hash = xmalloc((size_t)r->page_count * VCRYPTO_HASH_LEN);
	memcpy(nr.page_hash, r->page_hash, (size_t)r->page_count * VCRYPTO_HASH_LEN);
	for (uint32_t i = 0; i < d->npages; i++)
		memcpy(nr.page_hash[d->page[i]], d->page_hash[i], VCRYPTO_HASH_LEN);
	nr.generation = d->new_gen;
	nr.flags = d->root_flags;
	root_hash_compute(&nr, nr.root_hash);
	memcpy(nr.sig, d->root_sig, VCRYPTO_SIG_LEN);
	if (vcrypto_memcmp(nr.root_hash, d->new_root_hash, VCRYPTO_HASH_LEN) != 0 ||
	    manifest_root_verify(&nr, pk) != 0) {
		log_warn("manifest: delta %llu -> %llu does not produce the signed root",
		         (unsigned long long)d->old_gen, (unsigned long long)d->new_gen);
		free(nr.page_hash);
		return -1;
	}
	free(r->page_hash);
	*r = nr;
	return 0;
}
