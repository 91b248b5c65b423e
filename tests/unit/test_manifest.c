/* SPDX-License-Identifier: ISC */
/*
 * Unit tests for manifest: geometry, build/encode/decode/verify of the root,
 * strict decoding of roots and pages, and receipts.
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "manifest.h"
#include "util.h"
#include "wire.h"

#define CS MANIFEST_CHUNK_MIN

static struct vcrypto_identity mf_id, mf_other;
static const uint8_t mf_vol[MANIFEST_ID_LEN] = {0xde, 0xad, 0xbe, 0xef, 1, 2,  3,  4,
                                                5,    6,    7,    8,    9, 10, 11, 12};

static void mf_setup(void)
{
	cr_assert_eq(vcrypto_init(), 0);
	log_init("test", -1);
	vcrypto_identity_generate(&mf_id);
	vcrypto_identity_generate(&mf_other);
}

TestSuite(manifest, .init = mf_setup);

/* n entries with distinct hashes, generations <= gen, every 5th ZERO. Caller owns the result. */
static struct manifest_entry *mk_entries(uint32_t n, uint64_t gen)
{
	struct manifest_entry *e = xcalloc(n, sizeof(*e));

	for (uint32_t i = 0; i < n; i++) {
		e[i].gen = gen ? i % (gen + 1) : 0;
		e[i].flags = i % 5 == 0 ? MANIFEST_F_ZERO : 0;
		wire_put32(e[i].hash, i);
		e[i].hash[31] = 0x5a;
	}
	return e;
}

static void build(struct manifest *m, uint64_t image_size, uint32_t chunk_size, uint64_t gen)
{
	uint32_t n = manifest_chunk_count(image_size, chunk_size);

	cr_assert_neq(n, 0);
	cr_assert_eq(
	    manifest_build(m, mf_vol, image_size, chunk_size, gen, mk_entries(n, gen), mf_id.sk),
	    0);
}

Test(manifest, geometry)
{
	struct manifest_root r = {0};

	cr_assert(manifest_chunk_size_valid(64 * 1024));
	cr_assert(manifest_chunk_size_valid(256 * 1024));
	cr_assert(manifest_chunk_size_valid(4 * 1024 * 1024));
	cr_assert_not(manifest_chunk_size_valid(32 * 1024));
	cr_assert_not(manifest_chunk_size_valid(8 * 1024 * 1024));
	cr_assert_not(manifest_chunk_size_valid(96 * 1024));
	cr_assert_not(manifest_chunk_size_valid(0));

	cr_assert_eq(manifest_chunk_count(1, CS), 1);
	cr_assert_eq(manifest_chunk_count(CS, CS), 1);
	cr_assert_eq(manifest_chunk_count(CS + 1, CS), 2);
	cr_assert_eq(manifest_chunk_count(0, CS), 0);
	cr_assert_eq(manifest_chunk_count(MANIFEST_MAX_CHUNKS * CS, CS), MANIFEST_MAX_CHUNKS);
	cr_assert_eq(manifest_chunk_count(MANIFEST_MAX_CHUNKS * CS + 1, CS), 0);
	cr_assert_eq(manifest_chunk_count(UINT64_MAX, CS), 0);

	r.image_size = 3ull * 1024 * CS + 5;
	r.chunk_size = CS;
	r.chunk_count = manifest_chunk_count(r.image_size, CS);
	r.page_count = 4;
	cr_assert_eq(r.chunk_count, 3073);
	cr_assert_eq(manifest_chunk_len(&r, 0), CS);
	cr_assert_eq(manifest_chunk_len(&r, 3071), CS);
	cr_assert_eq(manifest_chunk_len(&r, 3072), 5);
	cr_assert_eq(manifest_chunk_len(&r, 3073), 0);
	cr_assert_eq(manifest_page_len(&r, 0), 1024);
	cr_assert_eq(manifest_page_len(&r, 2), 1024);
	cr_assert_eq(manifest_page_len(&r, 3), 1);
	cr_assert_eq(manifest_page_len(&r, 4), 0);
}

Test(manifest, round_trip_short_last_chunk)
{
	struct manifest m;
	struct manifest_root r;
	uint8_t *enc, *page = xmalloc(MANIFEST_PAGE_ENTRIES * MANIFEST_ENTRY_LEN);
	struct manifest_entry *out = xcalloc(MANIFEST_PAGE_ENTRIES, sizeof(*out));
	size_t len;

	build(&m, 3ull * 1024 * CS + 5, CS, 9);
	cr_assert_eq(m.root.chunk_count, 3073);
	cr_assert_eq(m.root.page_count, 4);
	cr_assert_eq(manifest_chunk_len(&m.root, 3072), 5);
	cr_assert_eq(manifest_root_verify(&m.root, mf_id.pk), 0);

	cr_assert_eq(manifest_root_encode(&m.root, &enc, &len), 0);
	cr_assert_eq(len, 64 + 4 * 32 + 64);
	cr_assert(memcmp(enc, "P2PVMAN1", 8) == 0);
	cr_assert_eq(wire_get16(enc + 8), 1);
	cr_assert_eq(wire_get32(enc + 12), CS);
	cr_assert_eq(wire_get64(enc + 16), 3ull * 1024 * CS + 5);
	cr_assert_eq(wire_get64(enc + 40), 9);
	cr_assert_eq(wire_get32(enc + 48), 1024);
	cr_assert_eq(wire_get32(enc + 52), 4);

	cr_assert_eq(manifest_root_decode(enc, len, &r), 0);
	cr_assert_eq(r.version, 1);
	cr_assert_arr_eq(r.volume_id, mf_vol, sizeof(mf_vol));
	cr_assert_eq(r.image_size, m.root.image_size);
	cr_assert_eq(r.chunk_size, CS);
	cr_assert_eq(r.generation, 9);
	cr_assert_eq(r.chunk_count, 3073);
	cr_assert_eq(r.page_count, 4);
	cr_assert_arr_eq(r.page_hash, m.root.page_hash, 4 * 32);
	cr_assert_arr_eq(r.root_hash, m.root.root_hash, 32);
	cr_assert_arr_eq(r.sig, m.root.sig, 64);
	cr_assert_eq(manifest_root_verify(&r, mf_id.pk), 0);
	cr_assert_eq(manifest_root_verify(&r, mf_other.pk), -1);

	/* The root hash is BLAKE2b-256 of header || page hashes, and is what is signed. */
	{
		uint8_t h[32];

		vcrypto_hash(h, enc, len - 64);
		cr_assert_arr_eq(h, r.root_hash, 32);
		cr_assert_eq(vcrypto_verify(r.sig, MANIFEST_ROOT_DOMAIN, h, 32, mf_id.pk), 0);
	}

	for (uint32_t p = 0; p < 4; p++) {
		size_t plen = manifest_page_encode(&m, p, page, MANIFEST_PAGE_ENTRIES * 48);
		uint32_t n = manifest_page_len(&r, p);

		cr_assert_eq(plen, (size_t)n * 48, "page %u", p);
		cr_assert_eq(manifest_page_decode(&r, p, page, plen, out), 0, "page %u", p);
		for (uint32_t i = 0; i < n; i++) {
			const struct manifest_entry *want = &m.entries[p * 1024 + i];

			cr_assert_eq(out[i].gen, want->gen);
			cr_assert_eq(out[i].flags, want->flags);
			cr_assert_arr_eq(out[i].hash, want->hash, 32);
		}
		/* A page under another index does not match that index's hash. */
		cr_assert_eq(manifest_page_decode(&r, (p + 1) % 4, page, plen, out), -1);
	}
	cr_assert_eq(manifest_page_encode(&m, 4, page, MANIFEST_PAGE_ENTRIES * 48), 0);
	cr_assert_eq(manifest_page_encode(&m, 0, page, 1024 * 48 - 1), 0);

	/* A changed field after decoding is caught by verify, not trusted. */
	r.generation++;
	cr_assert_eq(manifest_root_verify(&r, mf_id.pk), -1);

	manifest_root_free(&r);
	cr_assert_null(r.page_hash);
	free(enc);
	free(page);
	free(out);
	manifest_free(&m);
}

Test(manifest, root_every_byte_flip_fails)
{
	struct manifest m;
	struct manifest_root r;
	uint8_t *enc;
	size_t len;

	build(&m, 1000, CS, 0);
	cr_assert_eq(manifest_root_encode(&m.root, &enc, &len), 0);
	cr_assert_eq(len, 160);
	for (size_t i = 0; i < len; i++) {
		for (int bit = 0; bit < 8; bit++) {
			enc[i] ^= (uint8_t)(1u << bit);
			if (manifest_root_decode(enc, len, &r) == 0) {
				cr_assert_eq(manifest_root_verify(&r, mf_id.pk), -1,
				             "byte %zu bit %d accepted", i, bit);
				manifest_root_free(&r);
			}
			enc[i] ^= (uint8_t)(1u << bit);
		}
	}
	cr_assert_eq(manifest_root_decode(enc, len, &r), 0);
	cr_assert_eq(manifest_root_verify(&r, mf_id.pk), 0);
	manifest_root_free(&r);
	free(enc);
	manifest_free(&m);
}

/* Decode a copy of enc with one change applied; returns decode's result. */
static int decode_mod(const uint8_t *enc, size_t len, size_t off, const void *val, size_t vlen,
                      size_t newlen)
{
	uint8_t *b = xcalloc(1, newlen > len ? newlen : len);
	struct manifest_root r;
	int rc;

	memcpy(b, enc, len);
	if (vlen)
		memcpy(b + off, val, vlen);
	rc = manifest_root_decode(b, newlen, &r);
	if (rc == 0)
		manifest_root_free(&r);
	else
		cr_assert_null(r.page_hash);
	free(b);
	return rc;
}

Test(manifest, root_decode_strict)
{
	struct manifest m;
	uint8_t *enc, v[8];
	size_t len;

	build(&m, 2 * 1024 * CS, CS, 3); /* exactly two full pages */
	cr_assert_eq(m.root.page_count, 2);
	cr_assert_eq(manifest_root_encode(&m.root, &enc, &len), 0);
	cr_assert_eq(len, 64 + 64 + 64);

	cr_assert_eq(decode_mod(enc, len, 0, NULL, 0, len), 0);
	cr_assert_eq(decode_mod(enc, len, 0, NULL, 0, len - 1), -1, "short");
	cr_assert_eq(decode_mod(enc, len, 0, NULL, 0, len + 1), -1, "trailing byte");
	cr_assert_eq(decode_mod(enc, len, 0, NULL, 0, len + 32), -1, "extra page hash");
	cr_assert_eq(decode_mod(enc, len, 0, NULL, 0, 127), -1, "below minimum");
	cr_assert_eq(decode_mod(enc, len, 0, NULL, 0, 0), -1, "empty");
	cr_assert_eq(decode_mod(enc, len, 0, "P2PVMAN2", 8, len), -1, "magic");
	wire_put16(v, 2);
	cr_assert_eq(decode_mod(enc, len, 8, v, 2, len), -1, "version 2");
	wire_put16(v, 0);
	cr_assert_eq(decode_mod(enc, len, 8, v, 2, len), -1, "version 0");
	wire_put16(v, 4);
	cr_assert_eq(decode_mod(enc, len, 10, v, 2, len), -1, "unknown flags");
	wire_put16(v, 0x8000);
	cr_assert_eq(decode_mod(enc, len, 10, v, 2, len), -1, "unknown flags");
	wire_put16(v, MANIFEST_ROOT_F_FINAL);
	cr_assert_eq(decode_mod(enc, len, 10, v, 2, len), 0, "FINAL");
	wire_put16(v, MANIFEST_ROOT_F_WRITE_THROUGH);
	cr_assert_eq(decode_mod(enc, len, 10, v, 2, len), 0, "WRITE_THROUGH");
	wire_put16(v, MANIFEST_ROOT_F_ALL);
	cr_assert_eq(decode_mod(enc, len, 10, v, 2, len), 0, "FINAL | WRITE_THROUGH");
	wire_put32(v, CS + 1);
	cr_assert_eq(decode_mod(enc, len, 12, v, 4, len), -1, "chunk size not power of two");
	wire_put32(v, 32 * 1024);
	cr_assert_eq(decode_mod(enc, len, 12, v, 4, len), -1, "chunk size too small");
	wire_put32(v, 8 * 1024 * 1024);
	cr_assert_eq(decode_mod(enc, len, 12, v, 4, len), -1, "chunk size too large");
	wire_put32(v, 0);
	cr_assert_eq(decode_mod(enc, len, 12, v, 4, len), -1, "chunk size zero");
	wire_put64(v, 0);
	cr_assert_eq(decode_mod(enc, len, 16, v, 8, len), -1, "image size zero");
	wire_put64(v, 2 * 1024 * CS + 1);
	cr_assert_eq(decode_mod(enc, len, 16, v, 8, len), -1, "image needs 3 pages");
	wire_put64(v, 1024 * CS);
	cr_assert_eq(decode_mod(enc, len, 16, v, 8, len), -1, "image needs 1 page");
	wire_put64(v, 2 * 1024 * CS - 1);
	cr_assert_eq(decode_mod(enc, len, 16, v, 8, len), 0, "same page count is fine");
	wire_put64(v, UINT64_MAX);
	cr_assert_eq(decode_mod(enc, len, 16, v, 8, len), -1, "huge image");
	wire_put32(v, 512);
	cr_assert_eq(decode_mod(enc, len, 48, v, 4, len), -1, "page entries");
	wire_put32(v, 3);
	cr_assert_eq(decode_mod(enc, len, 52, v, 4, len), -1, "page count");
	cr_assert_eq(decode_mod(enc, len, 52, v, 4, len + 32), -1, "page count + matching len");
	wire_put32(v, UINT32_MAX);
	cr_assert_eq(decode_mod(enc, len, 52, v, 4, len), -1, "page count huge");
	for (size_t i = 56; i < 64; i++)
		cr_assert_eq(decode_mod(enc, len, i, "\x01", 1, len), -1, "reserved byte %zu", i);

	free(enc);
	manifest_free(&m);
}

Test(manifest, root_decode_largest_volume)
{
	/* A header for the largest volume decodes and fits one ROOT message; one more chunk does
	 * not. */
	size_t len = 64 + (size_t)MANIFEST_MAX_PAGES * 32 + 64;
	uint8_t *b = xcalloc(1, len + 32);
	struct manifest_root r;

	cr_assert_leq(1 + len, WIRE_MAX_MSG);
	memcpy(b, "P2PVMAN1", 8);
	wire_put16(b + 8, 1);
	wire_put32(b + 12, CS);
	wire_put64(b + 16, MANIFEST_MAX_CHUNKS * CS);
	wire_put32(b + 48, 1024);
	wire_put32(b + 52, MANIFEST_MAX_PAGES);
	cr_assert_eq(manifest_root_decode(b, len, &r), 0);
	cr_assert_eq(r.chunk_count, MANIFEST_MAX_CHUNKS);
	manifest_root_free(&r);

	wire_put64(b + 16, MANIFEST_MAX_CHUNKS * CS + 1);
	wire_put32(b + 52, MANIFEST_MAX_PAGES + 1);
	cr_assert_eq(manifest_root_decode(b, len + 32, &r), -1);
	free(b);
}

/*
 * Decode page 0 of r after replacing its bytes with `page` and pointing the
 * root's hash at them, so that the entry checks (not the hash) are tested.
 */
static int decode_rehashed(struct manifest_root *r, uint8_t *page, size_t len,
                           struct manifest_entry *out)
{
	vcrypto_hash(r->page_hash[0], page, len);
	return manifest_page_decode(r, 0, page, len, out);
}

Test(manifest, page_decode_strict)
{
	struct manifest m;
	struct manifest_root r;
	struct manifest_entry out[MANIFEST_PAGE_ENTRIES];
	uint8_t *enc, page[3 * 48 + 48], orig[3 * 48];
	size_t len, plen;

	build(&m, 2 * CS + 1, CS, 4); /* one page of three entries */
	cr_assert_eq(manifest_root_encode(&m.root, &enc, &len), 0);
	cr_assert_eq(manifest_root_decode(enc, len, &r), 0);
	plen = manifest_page_encode(&m, 0, page, sizeof(page));
	cr_assert_eq(plen, 3 * 48);
	memcpy(orig, page, plen);

	cr_assert_eq(manifest_page_decode(&r, 0, page, plen, out), 0);
	cr_assert_eq(manifest_page_decode(&r, 1, page, plen, out), -1, "page out of range");
	cr_assert_eq(manifest_page_decode(&r, UINT32_MAX, page, plen, out), -1);
	cr_assert_eq(manifest_page_decode(&r, 0, page, plen - 48, out), -1, "one entry short");
	cr_assert_eq(manifest_page_decode(&r, 0, page, plen - 1, out), -1, "one byte short");
	memset(page + plen, 0, 48);
	cr_assert_eq(manifest_page_decode(&r, 0, page, plen + 48, out), -1, "one entry more");
	cr_assert_eq(manifest_page_decode(&r, 0, page, 0, out), -1, "empty");
	for (size_t i = 0; i < plen; i++) {
		page[i] ^= 1;
		cr_assert_eq(manifest_page_decode(&r, 0, page, plen, out), -1, "byte %zu", i);
		page[i] ^= 1;
	}

	/* Hash fixed up: the entry checks alone must refuse these. */
	cr_assert_eq(decode_rehashed(&r, page, plen, out), 0);
	page[48 + 12 + 3] = 1; /* entry 1 reserved */
	cr_assert_eq(decode_rehashed(&r, page, plen, out), -1, "reserved");
	memcpy(page, orig, plen);
	page[48 + 8] = 0x80; /* entry 1 flags: unknown high bit */
	cr_assert_eq(decode_rehashed(&r, page, plen, out), -1, "unknown flag");
	memcpy(page, orig, plen);
	wire_put32(page + 48 + 8, 2);
	cr_assert_eq(decode_rehashed(&r, page, plen, out), -1, "flag bit 1");
	memcpy(page, orig, plen);
	wire_put64(page + 96, 5); /* entry 2 generation 5 > root's 4 */
	cr_assert_eq(decode_rehashed(&r, page, plen, out), -1, "generation after root");
	wire_put64(page + 96, 4);
	cr_assert_eq(decode_rehashed(&r, page, plen, out), 0, "generation equal to root");
	cr_assert_eq(out[2].gen, 4);

	manifest_root_free(&r);
	free(enc);
	manifest_free(&m);
}

Test(manifest, build_rejects_bad_input)
{
	struct manifest m;
	struct manifest_entry *e;

	/* Each failing build frees the entries: ASan reports a leak or double free otherwise. */
	cr_assert_eq(manifest_build(&m, mf_vol, CS, CS + 1, 0, mk_entries(1, 0), mf_id.sk), -1);
	cr_assert_null(m.entries);
	cr_assert_null(m.root.page_hash);
	cr_assert_eq(manifest_build(&m, mf_vol, 0, CS, 0, mk_entries(1, 0), mf_id.sk), -1);
	cr_assert_eq(manifest_build(&m, mf_vol, MANIFEST_MAX_CHUNKS * CS + 1, CS, 0,
	                            mk_entries(1, 0), mf_id.sk),
	             -1);
	cr_assert_eq(manifest_build(&m, mf_vol, CS, CS, 0, NULL, mf_id.sk), -1);

	e = mk_entries(3, 2);
	e[1].gen = 3;
	cr_assert_eq(manifest_build(&m, mf_vol, 3 * CS, CS, 2, e, mf_id.sk), -1);
	e = mk_entries(3, 2);
	e[2].flags = 4;
	cr_assert_eq(manifest_build(&m, mf_vol, 3 * CS, CS, 2, e, mf_id.sk), -1);
	e = mk_entries(3, 2);
	cr_assert_eq(manifest_build(&m, mf_vol, 3 * CS, CS, 2, e, mf_id.sk), 0);
	cr_assert_eq(m.entries, e);
	manifest_free(&m);
	cr_assert_null(m.entries);
}

Test(manifest, encode_rejects_inconsistent_root)
{
	struct manifest m;
	uint8_t *enc = NULL;
	size_t len = 0;

	build(&m, 5 * CS, CS, 0);
	m.root.page_count = 2;
	cr_assert_eq(manifest_root_encode(&m.root, &enc, &len), -1);
	cr_assert_null(enc);
	m.root.page_count = 1;
	m.root.chunk_count = 4;
	cr_assert_eq(manifest_root_encode(&m.root, &enc, &len), -1);
	m.root.chunk_count = 5;
	cr_assert_eq(manifest_root_encode(&m.root, &enc, &len), 0);
	free(enc);
	manifest_free(&m);
}

static uint8_t mf_secret[VCRYPTO_SECRET_LEN] = {7, 7, 7};

/* A receipt of mf_vol signed by mf_other and MACed with the key of mf_secret, encoded into buf. */
static void mk_receipt(struct manifest_receipt *rc, uint8_t key[VCRYPTO_KEY_LEN],
                       uint8_t buf[MANIFEST_RECEIPT_LEN])
{
	memset(rc, 0, sizeof(*rc));
	memcpy(rc->volume_id, mf_vol, sizeof(mf_vol));
	rc->generation = 0x0102030405060708ull;
	memset(rc->root_hash, 0x33, sizeof(rc->root_hash));
	rc->timestamp = 1700000000;
	manifest_receipt_key(key, mf_secret);
	manifest_receipt_sign(rc, &mf_other, key);
	manifest_receipt_encode(rc, buf);
}

Test(manifest, receipt_layout_and_round_trip)
{
	struct manifest_receipt rc, back;
	uint8_t key[VCRYPTO_KEY_LEN], want[VCRYPTO_KEY_LEN], buf[MANIFEST_RECEIPT_LEN];
	const char *why = NULL;

	mk_receipt(&rc, key, buf);
	cr_assert_arr_eq(rc.signer, mf_other.pk, 32);
	/* The key: BLAKE2b-256 keyed with the join secret over the label (PROTOCOL.md §10). */
	vcrypto_derive(want, mf_secret, "p2pvbd-receipt-mac-v2");
	cr_assert_arr_eq(key, want, 32);

	cr_assert(memcmp(buf, "P2PVRCP2", 8) == 0);
	cr_assert_arr_eq(buf + 8, mf_vol, 16);
	cr_assert_eq(wire_get64(buf + 24), rc.generation);
	cr_assert_arr_eq(buf + 32, rc.root_hash, 32);
	cr_assert_eq(wire_get64(buf + 64), 1700000000);
	cr_assert_arr_eq(buf + 72, mf_other.pk, 32);
	cr_assert_eq(vcrypto_verify(buf + 104, "p2pvbd-receipt-v2", buf, 104, mf_other.pk), 0);
	cr_assert_eq(vcrypto_mac_verify(buf + 168, key, buf, 168), 0);

	cr_assert_eq(manifest_receipt_decode(buf, MANIFEST_RECEIPT_LEN, key, &back, &why), 0);
	cr_assert_arr_eq(back.volume_id, rc.volume_id, 16);
	cr_assert_eq(back.generation, rc.generation);
	cr_assert_arr_eq(back.root_hash, rc.root_hash, 32);
	cr_assert_eq(back.timestamp, rc.timestamp);
	cr_assert_arr_eq(back.signer, rc.signer, 32);
	cr_assert_arr_eq(back.sig, rc.sig, 64);
	cr_assert_arr_eq(back.mac, rc.mac, 32);
	/* Without a key (a tracker): structure and signature only. */
	cr_assert_eq(manifest_receipt_decode(buf, MANIFEST_RECEIPT_LEN, NULL, &back, NULL), 0);
	/* Encoding what was decoded gives the same bytes (a tracker relays them so). */
	{
		uint8_t again[MANIFEST_RECEIPT_LEN];

		manifest_receipt_encode(&back, again);
		cr_assert_arr_eq(again, buf, MANIFEST_RECEIPT_LEN);
	}
}

Test(manifest, receipt_malformed_lengths)
{
	struct manifest_receipt rc, back;
	uint8_t key[VCRYPTO_KEY_LEN], buf[MANIFEST_RECEIPT_LEN + 1];
	const char *why;

	mk_receipt(&rc, key, buf);
	buf[MANIFEST_RECEIPT_LEN] = 0;
	for (size_t len = 0; len <= MANIFEST_RECEIPT_LEN + 1; len++) {
		if (len == MANIFEST_RECEIPT_LEN)
			continue;
		why = NULL;
		cr_assert_eq(manifest_receipt_decode(buf, len, key, &back, &why), -1, "length %zu",
		             len);
		cr_assert(why != NULL && strstr(why, "200 bytes") != NULL, "length %zu: %s", len,
		          why ? why : "(none)");
	}
	/* Bad magic, and the magic of another record. */
	buf[7] = '3';
	cr_assert_eq(manifest_receipt_decode(buf, MANIFEST_RECEIPT_LEN, key, &back, &why), -1);
	cr_assert(strstr(why, "magic") != NULL, "%s", why);
	memcpy(buf, "P2PVDLT1", 8);
	cr_assert_eq(manifest_receipt_decode(buf, MANIFEST_RECEIPT_LEN, key, &back, &why), -1);
}

Test(manifest, receipt_bad_signature_and_mac)
{
	struct manifest_receipt rc, back;
	uint8_t key[VCRYPTO_KEY_LEN], buf[MANIFEST_RECEIPT_LEN];
	const char *why;

	mk_receipt(&rc, key, buf);
	/* Every byte matters: 0..167 to the signature or the MAC, 168..199 to the MAC. */
	for (size_t i = 0; i < MANIFEST_RECEIPT_LEN; i++) {
		buf[i] ^= 0x10;
		why = NULL;
		cr_assert_eq(manifest_receipt_decode(buf, MANIFEST_RECEIPT_LEN, key, &back, &why),
		             -1, "byte %zu", i);
		cr_assert(why != NULL);
		if (i >= 104)
			cr_assert(strstr(why, i < 168 ? "signature" : "MAC") != NULL,
			          "byte %zu: %s", i, why);
		buf[i] ^= 0x10;
	}
	/* A tracker (no key) cannot tell a bad MAC: the source must. */
	buf[MANIFEST_RECEIPT_LEN - 1] ^= 1;
	cr_assert_eq(manifest_receipt_decode(buf, MANIFEST_RECEIPT_LEN, NULL, &back, &why), 0);
	buf[MANIFEST_RECEIPT_LEN - 1] ^= 1;

	/* Signed under the root domain instead: refused, so one cannot pass for the other. */
	vcrypto_sign(buf + 104, MANIFEST_ROOT_DOMAIN, buf, 104, mf_other.sk);
	cr_assert_eq(manifest_receipt_decode(buf, MANIFEST_RECEIPT_LEN, NULL, &back, &why), -1);
	cr_assert(strstr(why, "signature") != NULL, "%s", why);
}

Test(manifest, receipt_wrong_volume_secret)
{
	/* The MAC key of another volume (another join secret) does not verify it. */
	struct manifest_receipt rc, back;
	uint8_t key[VCRYPTO_KEY_LEN], other[VCRYPTO_KEY_LEN], buf[MANIFEST_RECEIPT_LEN];
	uint8_t secret2[VCRYPTO_SECRET_LEN];
	const char *why;

	mk_receipt(&rc, key, buf);
	memcpy(secret2, mf_secret, sizeof(secret2));
	secret2[31] ^= 0x80;
	manifest_receipt_key(other, secret2);
	cr_assert_eq(manifest_receipt_decode(buf, MANIFEST_RECEIPT_LEN, other, &back, &why), -1);
	cr_assert(strstr(why, "join secret") != NULL, "%s", why);
	/* The volume id is MACed and signed: moved to another volume, it is refused. */
	buf[8] ^= 1;
	cr_assert_eq(manifest_receipt_decode(buf, MANIFEST_RECEIPT_LEN, key, &back, &why), -1);
}

Test(manifest, receipt_resigned_by_another_key_is_refused)
{
	/*
	 * The attack of issue 14: take a genuine receipt, put a fresh key in
	 * signer and sign again. The signature verifies (a tracker keeps it),
	 * but the MAC, which covers the signer and needs the join secret, does not.
	 */
	struct manifest_receipt rc, back;
	struct vcrypto_identity fresh;
	uint8_t key[VCRYPTO_KEY_LEN], buf[MANIFEST_RECEIPT_LEN];
	const char *why;

	mk_receipt(&rc, key, buf);
	vcrypto_identity_generate(&fresh);
	memcpy(buf + 72, fresh.pk, 32);
	vcrypto_sign(buf + 104, MANIFEST_RECEIPT_DOMAIN, buf, 104, fresh.sk);
	cr_assert_eq(manifest_receipt_decode(buf, MANIFEST_RECEIPT_LEN, NULL, &back, &why), 0);
	cr_assert_eq(manifest_receipt_decode(buf, MANIFEST_RECEIPT_LEN, key, &back, &why), -1);
	cr_assert(strstr(why, "MAC") != NULL, "%s", why);
	vcrypto_identity_wipe(&fresh);
}

Test(manifest, receipt_retired_format_refused_with_reason)
{
	/* A 168-byte P2PVRCP1 receipt, validly signed as v1 receipts were: refused, saying why. */
	struct manifest_receipt back;
	uint8_t v1[168] = "P2PVRCP1";
	const char *why = NULL;

	memcpy(v1 + 8, mf_vol, 16);
	memcpy(v1 + 72, mf_other.pk, 32);
	vcrypto_sign(v1 + 104, "p2pvbd-receipt-v1", v1, 104, mf_other.sk);
	cr_assert_eq(manifest_receipt_decode(v1, sizeof(v1), NULL, &back, &why), -1);
	cr_assert(why != NULL && strstr(why, "P2PVRCP1") != NULL && strstr(why, "upgrade"), "%s",
	          why ? why : "(none)");
	/* A v1 receipt padded to the new length is still not a receipt. */
	{
		uint8_t pad[MANIFEST_RECEIPT_LEN] = {0};

		memcpy(pad, v1, sizeof(v1));
		cr_assert_eq(manifest_receipt_decode(pad, sizeof(pad), NULL, &back, &why), -1);
		cr_assert(strstr(why, "magic") != NULL, "%s", why);
	}
}

/* ---- Deltas -------------------------------------------------------------- */

/* The receiver's view: the source's root as it would arrive in a ROOT message. */
static void receiver_root(const struct manifest *m, struct manifest_root *r)
{
	uint8_t *enc;
	size_t len;

	cr_assert_eq(manifest_root_encode(&m->root, &enc, &len), 0);
	cr_assert_eq(manifest_root_decode(enc, len, r), 0);
	cr_assert_eq(manifest_root_verify(r, mf_id.pk), 0);
	free(enc);
}

/* A delta changing chunks 5, 1500 and 2049 (pages 0, 1, 2) of m. */
static void make_delta(struct manifest *m, uint8_t tag, uint8_t **blob, size_t *len)
{
	struct manifest_change ch[3] = {{.chunk = 5}, {.chunk = 1500}, {.chunk = 2049}};

	for (int i = 0; i < 3; i++) {
		memset(ch[i].entry.hash, tag + i, VCRYPTO_HASH_LEN);
		ch[i].entry.gen = 999; /* ignored: the delta sets the new generation */
	}
	cr_assert_eq(manifest_delta_make(m, ch, 3, 0, mf_id.sk, blob, len), 0);
}

Test(manifest, delta_round_trip)
{
	struct manifest m;
	struct manifest_root r;
	struct manifest_delta d;
	struct manifest_entry page1[MANIFEST_PAGE_ENTRIES];
	uint8_t *blob, *enc, h[VCRYPTO_HASH_LEN];
	size_t len, elen;

	build(&m, 2100ull * CS, CS, 0);
	receiver_root(&m, &r);
	/* The receiver held page 1 before the delta. */
	memcpy(page1, m.entries + MANIFEST_PAGE_ENTRIES, sizeof(page1));
	make_delta(&m, 0x70, &blob, &len);
	cr_assert_eq(len, MANIFEST_DELTA_HDR + 3 * MANIFEST_CHANGE_LEN + 3 * MANIFEST_DPAGE_LEN +
	                      2 * VCRYPTO_SIG_LEN);
	/* The source's own manifest moved on. */
	cr_assert_eq(m.root.generation, 1);
	cr_assert_eq(m.entries[1500].gen, 1);
	cr_assert_eq(m.entries[1500].hash[0], 0x71);
	cr_assert_eq(m.entries[1501].gen, 0);
	cr_assert_eq(manifest_root_verify(&m.root, mf_id.pk), 0);

	cr_assert_eq(manifest_delta_decode(blob, len, &d), 0);
	cr_assert_eq(d.old_gen, 0);
	cr_assert_eq(d.new_gen, 1);
	cr_assert_eq(d.nchanges, 3);
	cr_assert_eq(d.npages, 3);
	cr_assert_eq(d.changes[2].chunk, 2049);
	cr_assert_eq(manifest_delta_apply_root(&r, &d, mf_id.pk), 0);
	/* The receiver now has exactly the source's signed root of generation 1. */
	cr_assert_eq(r.generation, 1);
	cr_assert_arr_eq(r.root_hash, m.root.root_hash, VCRYPTO_HASH_LEN);
	cr_assert_arr_eq(r.sig, m.root.sig, VCRYPTO_SIG_LEN);
	cr_assert_arr_eq(r.page_hash, m.root.page_hash, (size_t)r.page_count * VCRYPTO_HASH_LEN);
	cr_assert_eq(manifest_root_encode(&r, &enc, &elen), 0);
	free(enc);
	/* A held page, with the change applied, hashes to the delta's page hash. */
	page1[1500 - MANIFEST_PAGE_ENTRIES] = d.changes[1].entry;
	manifest_entries_hash(page1, MANIFEST_PAGE_ENTRIES, h);
	cr_assert_arr_eq(h, d.page_hash[1], VCRYPTO_HASH_LEN);
	/* Replayed: its old generation is no longer current. */
	cr_assert_eq(manifest_delta_apply_root(&r, &d, mf_id.pk), -1);
	cr_assert_eq(r.generation, 1);
	manifest_delta_free(&d);
	free(blob);
	manifest_root_free(&r);
	manifest_free(&m);
}

Test(manifest, delta_in_order_only)
{
	struct manifest m;
	struct manifest_root r;
	struct manifest_delta d1, d2;
	uint8_t *b1, *b2;
	size_t l1, l2;

	build(&m, 2100ull * CS, CS, 0);
	receiver_root(&m, &r);
	make_delta(&m, 0x10, &b1, &l1);
	make_delta(&m, 0x20, &b2, &l2);
	cr_assert_eq(manifest_delta_decode(b1, l1, &d1), 0);
	cr_assert_eq(manifest_delta_decode(b2, l2, &d2), 0);
	cr_assert_eq(manifest_delta_apply_root(&r, &d2, mf_id.pk), -1, "a gap was accepted");
	cr_assert_eq(r.generation, 0);
	cr_assert_eq(manifest_delta_apply_root(&r, &d1, mf_id.pk), 0);
	cr_assert_eq(manifest_delta_apply_root(&r, &d2, mf_id.pk), 0);
	cr_assert_eq(r.generation, 2);
	cr_assert_arr_eq(r.root_hash, m.root.root_hash, VCRYPTO_HASH_LEN);
	manifest_delta_free(&d1);
	manifest_delta_free(&d2);
	free(b1);
	free(b2);
	manifest_root_free(&r);
	manifest_free(&m);
}

Test(manifest, delta_forged)
{
	struct manifest m;
	struct manifest_root r;
	struct manifest_delta d;
	uint8_t *blob;
	size_t len;
	int accepted = 0;

	build(&m, 2100ull * CS, CS, 0);
	receiver_root(&m, &r);
	make_delta(&m, 0x30, &blob, &len);
	/* Any changed byte: refused by the decoder or by the checks, never applied. */
	for (size_t i = 0; i < len; i++) {
		struct manifest_root copy = r;

		copy.page_hash = xmalloc((size_t)r.page_count * VCRYPTO_HASH_LEN);
		memcpy(copy.page_hash, r.page_hash, (size_t)r.page_count * VCRYPTO_HASH_LEN);
		blob[i] ^= 0x04;
		if (manifest_delta_decode(blob, len, &d) == 0) {
			accepted += manifest_delta_apply_root(&copy, &d, mf_id.pk) == 0;
			manifest_delta_free(&d);
		}
		blob[i] ^= 0x04;
		manifest_root_free(&copy);
	}
	cr_assert_eq(accepted, 0, "%d forged deltas were applied", accepted);
	/* Signed by another key. */
	cr_assert_eq(manifest_delta_decode(blob, len, &d), 0);
	cr_assert_eq(manifest_delta_apply_root(&r, &d, mf_other.pk), -1);
	/* Another volume. */
	r.volume_id[0] ^= 1;
	cr_assert_eq(manifest_delta_apply_root(&r, &d, mf_id.pk), -1);
	r.volume_id[0] ^= 1;
	cr_assert_eq(manifest_delta_apply_root(&r, &d, mf_id.pk), 0);
	manifest_delta_free(&d);
	free(blob);
	manifest_root_free(&r);
	manifest_free(&m);
}

Test(manifest, delta_decode_strict)
{
	struct manifest m;
	struct manifest_delta d;
	struct manifest_change bad[2] = {{.chunk = 7}, {.chunk = 7}};
	uint8_t *blob, *big;
	size_t len;

	build(&m, 2100ull * CS, CS, 0);
	make_delta(&m, 0x40, &blob, &len);
	for (size_t cut = 0; cut < len; cut += 7)
		cr_assert_eq(manifest_delta_decode(blob, cut, &d), -1, "truncated to %zu", cut);
	big = xcalloc(1, len + 1);
	memcpy(big, blob, len);
	cr_assert_eq(manifest_delta_decode(big, len + 1, &d), -1, "trailing byte");
	free(big);
	/* Counts that do not match the length (checked before any allocation). */
	wire_put32(blob + 44, 0xffffffffu);
	cr_assert_eq(manifest_delta_decode(blob, len, &d), -1);
	wire_put32(blob + 44, 3);
	wire_put32(blob + 48, 4);
	cr_assert_eq(manifest_delta_decode(blob, len, &d), -1);
	wire_put32(blob + 48, 0);
	cr_assert_eq(manifest_delta_decode(blob, len, &d), -1, "changes without pages");
	wire_put32(blob + 48, 3);
	/* Unknown root flags, reserved bits. */
	wire_put16(blob + 40, 4);
	cr_assert_eq(manifest_delta_decode(blob, len, &d), -1);
	wire_put16(blob + 40, 0);
	wire_put16(blob + 42, 1);
	cr_assert_eq(manifest_delta_decode(blob, len, &d), -1);
	wire_put16(blob + 42, 0);
	/* Generations that are not G -> G + 1. */
	wire_put64(blob + 32, 5);
	cr_assert_eq(manifest_delta_decode(blob, len, &d), -1);
	wire_put64(blob + 32, 1);
	cr_assert_eq(manifest_delta_decode(blob, len, &d), 0);
	manifest_delta_free(&d);
	/* The source refuses changes out of order, duplicated or beyond the volume. */
	cr_assert_eq(manifest_delta_make(&m, bad, 2, 0, mf_id.sk, &big, &len), -1);
	bad[0].chunk = 5000;
	cr_assert_eq(manifest_delta_make(&m, bad, 1, 0, mf_id.sk, &big, &len), -1);
	cr_assert_eq(manifest_delta_make(&m, bad, 0, 0x4, mf_id.sk, &big, &len), -1,
	             "unknown flag");
	free(blob);
	manifest_free(&m);
}

/* The freeze: a delta with no changes that only makes the root FINAL. */
Test(manifest, delta_final_without_changes)
{
	struct manifest m;
	struct manifest_root r, r2;
	struct manifest_delta d;
	uint8_t *blob, *enc;
	size_t len, elen;

	build(&m, 2100ull * CS, CS, 0);
	receiver_root(&m, &r);
	cr_assert_eq(r.flags, 0);
	cr_assert_eq(manifest_delta_make(&m, NULL, 0, MANIFEST_ROOT_F_FINAL, mf_id.sk, &blob, &len),
	             0);
	cr_assert_eq(len, MANIFEST_DELTA_HDR + 2 * VCRYPTO_SIG_LEN);
	cr_assert_eq(m.root.flags, MANIFEST_ROOT_F_FINAL);
	cr_assert_eq(manifest_delta_decode(blob, len, &d), 0);
	cr_assert_eq(d.nchanges, 0);
	cr_assert_eq(d.root_flags, MANIFEST_ROOT_F_FINAL);
	cr_assert_eq(manifest_delta_apply_root(&r, &d, mf_id.pk), 0);
	cr_assert_eq(r.generation, 1);
	cr_assert_eq(r.flags, MANIFEST_ROOT_F_FINAL);
	cr_assert_arr_eq(r.root_hash, m.root.root_hash, VCRYPTO_HASH_LEN);
	/* The final root travels as a ROOT too and keeps its flag. */
	cr_assert_eq(manifest_root_encode(&r, &enc, &elen), 0);
	cr_assert_eq(manifest_root_decode(enc, elen, &r2), 0);
	cr_assert_eq(r2.flags, MANIFEST_ROOT_F_FINAL);
	cr_assert_eq(manifest_root_verify(&r2, mf_id.pk), 0);
	/* A flag the signer did not set does not verify. */
	r2.flags = 0;
	wire_put16(enc + 10, 0);
	manifest_root_free(&r2);
	cr_assert_eq(manifest_root_decode(enc, elen, &r2), 0);
	cr_assert_neq(manifest_root_verify(&r2, mf_id.pk), 0);
	/* Unknown root flags are refused. */
	wire_put16(enc + 10, 4);
	manifest_root_free(&r2);
	cr_assert_eq(manifest_root_decode(enc, elen, &r2), -1);
	free(enc);
	manifest_delta_free(&d);
	free(blob);
	manifest_root_free(&r);
	manifest_free(&m);
}
