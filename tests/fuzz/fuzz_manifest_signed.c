/* SPDX-License-Identifier: ISC */
/*
 * Structure-aware libFuzzer harness for the manifest root and its pages,
 * past the signature. fuzz_manifest.c feeds mutated bytes straight to the
 * decoders, and almost every one dies at the signature or the page hash;
 * here the harness signs what the fuzzer made with a fixed test key (and,
 * when asked, puts the page's hash into the root first), so that the checks
 * behind them run: geometry, page entries, the re-encoding.
 *
 * Input:
 *   byte 0      control: bit 0 FIX_LEN: the root's page-hash section and
 *               its page count are sized to the geometry in its header,
 *               and what follows the root is page P's bytes; bit 1 FIX_PAGE:
 *               those bytes are cut or zero-padded to page P's length and
 *               their hash goes into the root before it is signed
 *   bytes 1-2   P, a page number (big-endian)
 *   bytes 3..   the root without its signature (PROTOCOL.md §8.1), then
 *               (with FIX_LEN) page P's bytes (§8.2)
 * The harness appends the root's signature (fixed key, §8.1) and decodes.
 *
 * Invariants: a root that decodes has the hash the harness signed,
 * verifies with the key and no other, re-encodes to the same bytes, and its
 * geometry adds up; a root whose fields change no longer verifies. A page
 * decodes exactly when its length and hash match and every entry is
 * well-formed (reserved zero, known flags, generation not after the root's);
 * it re-encodes to the same bytes; and a one-page volume rebuilt from it with
 * manifest_build gives back the very root (Ed25519 signatures are
 * deterministic).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_signed.h"
#include "manifest.h"
#include "util.h"
#include "vcrypto.h"
#include "wire.h"

enum { FIX_LEN = 1, FIX_PAGE = 2 };

/* Root header offsets (PROTOCOL.md §8.1). */
enum { RH_FLAGS = 10, RH_CHUNK_SIZE = 12, RH_IMAGE_SIZE = 16, RH_PAGE_COUNT = 52 };

/* FIX_LEN sizes roots of up to this many pages (128 KiB of hashes); larger ones stay as given. */
#define PAGES_CAP 4096u

/* Checks on a root that decoded from buf (len bytes, signed over hash h by the harness). */
static void check_root(const struct manifest_root *r, const uint8_t *buf, size_t len,
                       const uint8_t h[VCRYPTO_HASH_LEN])
{
	struct manifest_root t;
	uint8_t *enc;
	size_t elen;
	uint32_t last;

	if (memcmp(r->root_hash, h, VCRYPTO_HASH_LEN) != 0)
		abort(); /* the root hash is the hash of the unsigned encoding */
	if (manifest_root_verify(r, fz_key.pk) != 0)
		abort(); /* signed by the harness: must verify */
	if (manifest_root_verify(r, fz_other.pk) == 0)
		abort(); /* and with no other key */
	if (manifest_root_encode(r, &enc, &elen) != 0)
		abort();
	if (elen != len || memcmp(enc, buf, len) != 0)
		abort(); /* one encoding per root */
	free(enc);

	/* Geometry: the chunks add up to the image, the pages to the chunks. */
	if (r->chunk_count == 0 || r->page_count == 0 || r->page_count > MANIFEST_MAX_PAGES ||
	    r->page_count != (r->chunk_count + MANIFEST_PAGE_ENTRIES - 1) / MANIFEST_PAGE_ENTRIES)
		abort();
	last = manifest_chunk_len(r, r->chunk_count - 1);
	if (last == 0 || last > r->chunk_size ||
	    (uint64_t)(r->chunk_count - 1) * r->chunk_size + last != r->image_size ||
	    manifest_chunk_len(r, r->chunk_count) != 0)
		abort();
	if (manifest_page_len(r, r->page_count - 1) == 0 ||
	    manifest_page_len(r, r->page_count - 1) > MANIFEST_PAGE_ENTRIES ||
	    manifest_page_len(r, r->page_count) != 0)
		abort();

	/* Any field changed after signing: the signature no longer holds. */
	t = *r;
	t.generation ^= 1;
	if (manifest_root_verify(&t, fz_key.pk) == 0)
		abort();
	t = *r;
	t.flags ^= MANIFEST_ROOT_F_FINAL;
	if (manifest_root_verify(&t, fz_key.pk) == 0)
		abort();
}

/* What manifest_page_decode must answer for page p of r, worked out independently. */
static int page_expected(const struct manifest_root *r, uint32_t p, const uint8_t *in, size_t len)
{
	uint8_t h[VCRYPTO_HASH_LEN];
	uint32_t n = manifest_page_len(r, p);

	if (n == 0 || len != (size_t)n * MANIFEST_ENTRY_LEN)
		return -1;
	vcrypto_hash(h, in, len);
	if (memcmp(h, r->page_hash[p], sizeof(h)) != 0)
		return -1;
	for (uint32_t i = 0; i < n; i++) {
		const uint8_t *e = in + (size_t)i * MANIFEST_ENTRY_LEN;

		if (wire_get64(e) > r->generation || (wire_get32(e + 8) & ~MANIFEST_F_ZERO) != 0 ||
		    wire_get32(e + 12) != 0)
			return -1;
	}
	return 0;
}

/*
 * Page p of r: decode, compare with the model, re-encode; for a one-page
 * volume, rebuild the whole signed root from the entries.
 */
static void check_page(const struct manifest_root *r, uint32_t p, const uint8_t *in, size_t len,
                       const uint8_t *root_enc, size_t root_len)
{
	static struct manifest_entry out[MANIFEST_PAGE_ENTRIES];
	static uint8_t again[MANIFEST_PAGE_ENTRIES * MANIFEST_ENTRY_LEN];
	int rc = manifest_page_decode(r, p, in, len, out);
	uint32_t n = manifest_page_len(r, p);
	struct manifest m;
	struct manifest_entry *e;
	uint8_t *enc;
	size_t elen;

	if (rc != page_expected(r, p, in, len))
		abort();
	if (rc != 0)
		return;
	manifest_entries_encode(out, n, again);
	if (memcmp(again, in, len) != 0)
		abort();
	if (r->page_count != 1)
		return;
	e = xmalloc((size_t)n * sizeof(*e));
	memcpy(e, out, (size_t)n * sizeof(*e));
	if (manifest_build(&m, r->volume_id, r->image_size, r->chunk_size, r->generation, e,
	                   fz_key.sk) != 0)
		abort(); /* entries the decoder took, the builder must take */
	if (r->flags != 0)
		manifest_set_flags(&m, r->flags, fz_key.sk);
	if (manifest_root_encode(&m.root, &enc, &elen) != 0)
		abort();
	if (elen != root_len || memcmp(enc, root_enc, elen) != 0)
		abort(); /* the same volume, built again, is the same signed root */
	free(enc);
	manifest_free(&m);
}

static void write_seeds(void)
{
	for (unsigned b = 0; b < FZ_NBASES; b++) {
		struct manifest m;
		uint8_t *enc, *in;
		size_t len, plen, n;
		char name[64];

		fz_base_build(&m, b);
		if (manifest_root_encode(&m.root, &enc, &len) != 0)
			abort();
		/* Every page of the volume, each after the root that names it. */
		for (uint32_t p = 0; p < m.root.page_count; p++) {
			plen = (size_t)manifest_page_len(&m.root, p) * MANIFEST_ENTRY_LEN;
			n = 3 + len - VCRYPTO_SIG_LEN + plen;
			in = xmalloc(n);
			in[0] = FIX_LEN | FIX_PAGE;
			in[1] = (uint8_t)(p >> 8);
			in[2] = (uint8_t)p;
			memcpy(in + 3, enc, len - VCRYPTO_SIG_LEN);
			if (manifest_page_encode(&m, p, in + 3 + len - VCRYPTO_SIG_LEN, plen) !=
			    plen)
				abort();
			snprintf(name, sizeof(name), "base%u-page%u", b, p);
			fz_seed_write(name, in, n);
			free(in);
		}
		/* The root alone, with nothing fixed. */
		in = xmalloc(3 + len - VCRYPTO_SIG_LEN);
		in[0] = in[1] = in[2] = 0;
		memcpy(in + 3, enc, len - VCRYPTO_SIG_LEN);
		snprintf(name, sizeof(name), "base%u-root", b);
		fz_seed_write(name, in, 3 + len - VCRYPTO_SIG_LEN);
		free(in);
		free(enc);
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
	fz_keys_init();
	if (fz_seed_dir() != NULL)
		write_seeds();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *in, *page = NULL;
	size_t n, rootlen, plen = 0;
	uint8_t *buf, *pbuf = NULL, h[VCRYPTO_HASH_LEN];
	uint32_t p, chunks = 0, pages = 0;
	struct manifest_root r;
	uint8_t ctl;

	if (size < 3)
		return 0;
	ctl = data[0];
	p = (uint32_t)data[1] << 8 | data[2];
	in = data + 3;
	n = size - 3;
	rootlen = n;
	if ((ctl & FIX_LEN) && n >= MANIFEST_ROOT_HDR_LEN) {
		uint32_t cs = wire_get32(in + RH_CHUNK_SIZE);

		if (manifest_chunk_size_valid(cs))
			chunks = manifest_chunk_count(wire_get64(in + RH_IMAGE_SIZE), cs);
		pages = (chunks + MANIFEST_PAGE_ENTRIES - 1) / MANIFEST_PAGE_ENTRIES;
		if (chunks == 0 || pages > PAGES_CAP)
			ctl &= ~(FIX_LEN | FIX_PAGE);
		else {
			rootlen = MANIFEST_ROOT_HDR_LEN + (size_t)pages * VCRYPTO_HASH_LEN;
			page = in + (n < rootlen ? n : rootlen);
			plen = n < rootlen ? 0 : n - rootlen;
		}
	} else {
		ctl &= ~(FIX_LEN | FIX_PAGE);
	}
	buf = xcalloc(1, rootlen + VCRYPTO_SIG_LEN);
	memcpy(buf, in, n < rootlen ? n : rootlen);
	if (ctl & FIX_LEN)
		wire_put32(buf + RH_PAGE_COUNT, pages);
	if ((ctl & FIX_PAGE) && p < pages) {
		struct manifest_root g = {.chunk_count = chunks, .page_count = pages};
		size_t need = (size_t)manifest_page_len(&g, p) * MANIFEST_ENTRY_LEN;

		pbuf = xcalloc(1, need);
		memcpy(pbuf, page, plen < need ? plen : need);
		page = pbuf;
		plen = need;
		vcrypto_hash(buf + MANIFEST_ROOT_HDR_LEN + (size_t)p * VCRYPTO_HASH_LEN, page,
		             plen);
	}
	/* The signature covers the root hash: BLAKE2b-256 of the unsigned encoding (§8.1). */
	vcrypto_hash(h, buf, rootlen);
	vcrypto_sign(buf + rootlen, MANIFEST_ROOT_DOMAIN, h, sizeof(h), fz_key.sk);
	if (manifest_root_decode(buf, rootlen + VCRYPTO_SIG_LEN, &r) == 0) {
		check_root(&r, buf, rootlen + VCRYPTO_SIG_LEN, h);
		if (page != NULL)
			check_page(&r, p, page, plen, buf, rootlen + VCRYPTO_SIG_LEN);
		manifest_root_free(&r);
	}
	free(pbuf);
	free(buf);
	return 0;
}
