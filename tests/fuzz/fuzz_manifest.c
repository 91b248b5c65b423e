/* SPDX-License-Identifier: ISC */
/*
 * libFuzzer harness for the manifest decoders: roots, pages and receipts all
 * arrive from peers. Invariants: a root that decodes re-encodes to the same
 * bytes; a page that decodes holds only entries the root allows.
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
 * (No receipt: their format is changing with issue 14 part 2.)
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

	if (manifest_receipt_decode(data, size, &rc) == 0) {
		uint8_t buf[MANIFEST_RECEIPT_LEN];

		manifest_receipt_encode(&rc, buf);
		if (size != MANIFEST_RECEIPT_LEN || memcmp(buf, data, size) != 0)
			abort();
	}
	return 0;
}
