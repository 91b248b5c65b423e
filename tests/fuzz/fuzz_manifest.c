/* SPDX-License-Identifier: ISC */
/*
 * libFuzzer harness for the manifest decoders: roots, pages and receipts all
 * arrive from peers. Invariants: a root that decodes re-encodes to the same
 * bytes; a page that decodes holds only entries the root allows; a receipt
 * that decodes re-encodes to the same bytes, and one made and then changed in
 * any byte does not decode.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_signed.h"
#include "manifest.h"
#include "util.h"

/* A fixed root of one page with three entries, built once with a fixed key. */
static struct manifest fz_m;
static struct manifest_root fz_root;
/* A receipt signer and a receipt MAC key (of a fixed join secret). */
static struct vcrypto_identity fz_signer;
static uint8_t fz_receipt_key[VCRYPTO_KEY_LEN];

static void fz_init(void)
{
	struct vcrypto_identity id;
	uint8_t seed_vol[MANIFEST_ID_LEN] = {1};
	struct manifest_entry *e = xcalloc(3, sizeof(*e));
	uint8_t *enc;
	size_t len;

	if (vcrypto_init() < 0)
		abort();
	log_init("fuzz", -1);
	vcrypto_identity_generate(&id);
	vcrypto_identity_generate(&fz_signer);
	{
		static const uint8_t secret[VCRYPTO_SECRET_LEN] = {9};

		manifest_receipt_key(fz_receipt_key, secret);
	}
	for (int i = 0; i < 3; i++) {
		e[i].gen = (uint64_t)i;
		e[i].flags = i == 1 ? MANIFEST_F_ZERO : 0;
		e[i].hash[0] = (uint8_t)i;
	}
	/* Ownership of e passes to fz_m. */
	if (manifest_build(&fz_m, seed_vol, 2 * MANIFEST_CHUNK_MIN + 7, MANIFEST_CHUNK_MIN, 2, e,
	                   id.sk) < 0)
		abort();
	if (manifest_root_encode(&fz_m.root, &enc, &len) < 0 ||
	    manifest_root_decode(enc, len, &fz_root) < 0)
		abort();
	free(enc);
	vcrypto_identity_wipe(&id);
}

/*
 * FUZZ_WRITE_SEEDS=DIR: the fixed root and its page, from the real encoders.
 * (Receipts need no seed: every input also makes a signed one, below.)
 */
static void write_seeds(void)
{
	uint8_t page[3 * MANIFEST_ENTRY_LEN], *enc;
	size_t len;

	fz_init();
	if (manifest_root_encode(&fz_m.root, &enc, &len) != 0 ||
	    manifest_page_encode(&fz_m, 0, page, sizeof(page)) != sizeof(page))
		abort();
	fz_seed_write("root", enc, len);
	fz_seed_write("page0", page, sizeof(page));
	free(enc);
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
	static int ready;
	static struct manifest_entry out[MANIFEST_PAGE_ENTRIES];
	struct manifest_root r;
	struct manifest_receipt rc;
	const char *why = NULL;
	uint8_t *enc;
	size_t len;

	if (!ready) {
		fz_init();
		ready = 1;
	}

	if (manifest_root_decode(data, size, &r) == 0) {
		if (manifest_root_encode(&r, &enc, &len) < 0)
			abort();
		if (len != size || memcmp(enc, data, size) != 0)
			abort();
		if (r.chunk_count == 0 || r.page_count == 0 || r.page_count > MANIFEST_MAX_PAGES ||
		    manifest_chunk_len(&r, r.chunk_count - 1) == 0)
			abort();
		free(enc);
		manifest_root_free(&r);
	}

	/* Page 0 of the fixed root: the only way through is the exact page. */
	if (manifest_page_decode(&fz_root, 0, data, size, out) == 0) {
		uint8_t page[3 * MANIFEST_ENTRY_LEN];

		if (manifest_page_encode(&fz_m, 0, page, sizeof(page)) != size ||
		    memcmp(page, data, size) != 0)
			abort();
		for (int i = 0; i < 3; i++)
			if (out[i].gen > fz_root.generation || (out[i].flags & ~MANIFEST_F_ZERO))
				abort();
	}
	/* Also exercise the page decoder's structure checks past the hash. */
	if (size >= 4) {
		uint32_t page = (uint32_t)data[0] << 24 | (uint32_t)data[1] << 16 |
		                (uint32_t)data[2] << 8 | data[3];

		(void)manifest_page_decode(&fz_root, page, data + 4, size - 4, out);
	}

	/*
	 * Receipts: one that decodes re-encodes to the same bytes; one whose MAC
	 * verifies under a key also decodes without it (what a tracker checks).
	 */
	if (manifest_receipt_decode(data, size, NULL, &rc, &why) == 0) {
		uint8_t buf[MANIFEST_RECEIPT_LEN];

		manifest_receipt_encode(&rc, buf);
		if (size != MANIFEST_RECEIPT_LEN || memcmp(buf, data, size) != 0)
			abort();
	} else if (why == NULL ||
	           manifest_receipt_decode(data, size, fz_receipt_key, &rc, &why) == 0) {
		abort();
	}
	/* Past the signature and the MAC: the fields of a receipt made from the input. */
	if (size >= 40) {
		struct manifest_receipt mk = {0}, back;
		uint8_t buf[MANIFEST_RECEIPT_LEN];

		memcpy(mk.volume_id, data, MANIFEST_ID_LEN);
		memcpy(&mk.generation, data + 16, 8);
		memcpy(mk.root_hash, data + 8, 32);
		memcpy(&mk.timestamp, data + 32, 8);
		manifest_receipt_sign(&mk, &fz_signer, fz_receipt_key);
		manifest_receipt_encode(&mk, buf);
		if (manifest_receipt_decode(buf, sizeof(buf), fz_receipt_key, &back, &why) != 0 ||
		    back.generation != mk.generation || back.timestamp != mk.timestamp)
			abort();
		buf[data[0] % sizeof(buf)] ^= (uint8_t)(data[1] | 1);
		if (manifest_receipt_decode(buf, sizeof(buf), fz_receipt_key, &back, &why) == 0)
			abort();
	}
	return 0;
}
