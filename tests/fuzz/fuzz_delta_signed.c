/* SPDX-License-Identifier: ISC */
/*
 * Structure-aware libFuzzer harness for deltas, past the signatures, and
 * their application to a manifest. fuzz_delta.c's inputs almost all stop at
 * the delta's signature; here the harness signs what the fuzzer made with a
 * fixed test key, after fixing (each only when the control byte asks) what a
 * mutation can hardly get right by chance: the section lengths, the header's
 * volume and generations, the page hashes the changes yield, the new root's
 * hash and signature. Then it decodes the delta and applies it to a small
 * manifest built in the harness (fuzz_signed.h), as a destination does
 * (manifest_delta_apply_root, and the held pages checked against the
 * delta's page hashes as swarm/gens.c does), and compares the result with
 * what the source side (manifest_delta_make) produces from the same changes.
 *
 * Input:
 *   byte 0   control: bit 0 FIX_LEN (the change and page sections sized to
 *            the header's counts, cut or zero-padded), bit 1 FIX_HDR (magic,
 *            volume and generations of the base, reserved zero, every
 *            change's generation the new one), bit 2 FIX_PAGES (the page
 *            list and hashes recomputed from the changes on the base's
 *            entries), bit 3 FIX_ROOT (the new root hash and the root
 *            signature of the root these pages give), bit 4 the base
 *            manifest (fuzz_signed.h), bit 5 ADD_PAGE and bit 6 DROP_PAGE
 *            (after FIX_PAGES, before FIX_ROOT: one page record more, an
 *            untouched page with its old hash, or one fewer: the lies about
 *            the page list that are hardest to reach by byte mutations)
 *   bytes 1.. the delta (PROTOCOL.md §9.1) up to and including the root
 *            signature; the harness appends the delta's signature
 *
 * Invariants: what decodes has counts and orders in bounds; applying either
 * fails and leaves the root as it was, or gives a root of the next
 * generation that verifies with the key, carries exactly the delta's page
 * hashes and re-encodes; it never applies twice nor with another key; a
 * delta with every fix applied and its chunks inside the volume applies,
 * and with a page added or dropped it does not;
 * a page the delta changed decodes under the new root exactly when the
 * delta's page hash is that of the changed entries; the source side, given
 * the same changes, makes a delta that applies to the same root and, when
 * the fuzzer's delta was the honest one, is byte for byte the same.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_signed.h"
#include "manifest.h"
#include "util.h"
#include "vcrypto.h"
#include "wire.h"

enum {
	FIX_LEN = 1,
	FIX_HDR = 2,
	FIX_PAGES = 4,
	FIX_ROOT = 8,
	BASE_BIT = 4,
	ADD_PAGE = 32,
	DROP_PAGE = 64
};
#define FIX_ALL (FIX_HDR | FIX_PAGES | FIX_ROOT)

/* Delta header offsets (PROTOCOL.md §9.1). */
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
};

/* The fixes handle deltas of up to this many changes (the zero padding would only slow down). */
#define CHANGES_CAP 2048u

static struct manifest base[FZ_NBASES];

static size_t delta_len(uint32_t n, uint32_t m)
{
	return MANIFEST_DELTA_HDR + (size_t)n * MANIFEST_CHANGE_LEN +
	       (size_t)m * MANIFEST_DPAGE_LEN + 2 * VCRYPTO_SIG_LEN;
}

/* A growable byte buffer: the delta while the harness fixes it. */
struct dbuf {
	uint8_t *p;
	size_t len;
};

/* Resize to len bytes (new bytes are zero). */
static void dbuf_resize(struct dbuf *b, size_t len)
{
	b->p = xrealloc(b->p, len + VCRYPTO_SIG_LEN);
	if (len > b->len)
		memset(b->p + b->len, 0, len - b->len);
	b->len = len;
}

/* The base's entries with the changes encoded in b applied (those inside the volume). */
static struct manifest_entry *changed_entries(const struct manifest *bm, const uint8_t *ch,
                                              uint32_t n)
{
	struct manifest_entry *e = xmalloc((size_t)bm->root.chunk_count * sizeof(*e));

	memcpy(e, bm->entries, (size_t)bm->root.chunk_count * sizeof(*e));
	for (uint32_t i = 0; i < n; i++, ch += MANIFEST_CHANGE_LEN) {
		uint32_t c = wire_get32(ch);

		if (c >= bm->root.chunk_count)
			continue;
		e[c].gen = wire_get64(ch + 4);
		e[c].flags = wire_get32(ch + 12);
		memcpy(e[c].hash, ch + 20, VCRYPTO_HASH_LEN);
	}
	return e;
}

/* FIX_HDR: the delta follows the base (volume, generations); every change is of the new one. */
static void fix_hdr(struct dbuf *b, const struct manifest *bm, uint32_t n)
{
	uint64_t gen = bm->root.generation;
	uint8_t *ch = b->p + MANIFEST_DELTA_HDR;

	memcpy(b->p + DH_MAGIC, MANIFEST_DELTA_MAGIC, 8);
	memcpy(b->p + DH_VOLUME_ID, bm->root.volume_id, MANIFEST_ID_LEN);
	wire_put64(b->p + DH_OLD_GEN, gen);
	wire_put64(b->p + DH_NEW_GEN, gen + 1);
	wire_put16(b->p + DH_RESERVED, 0);
	for (uint32_t i = 0; i < n && ch + MANIFEST_CHANGE_LEN <= b->p + b->len;
	     i++, ch += MANIFEST_CHANGE_LEN)
		wire_put64(ch + 4, gen + 1);
}

/* FIX_PAGES: rewrite the page section as the changes' pages and the hashes they yield. */
static void fix_pages(struct dbuf *b, const struct manifest *bm)
{
	uint32_t n = wire_get32(b->p + DH_NCHANGES), m = wire_get32(b->p + DH_NPAGES), k = 0;
	size_t changes_end = MANIFEST_DELTA_HDR + (size_t)n * MANIFEST_CHANGE_LEN;
	uint8_t root_sig[VCRYPTO_SIG_LEN] = {0}, *pg_sec;
	struct manifest_entry *e;
	uint32_t *pages;

	if (m <= n && b->len == delta_len(n, m) - VCRYPTO_SIG_LEN)
		memcpy(root_sig, b->p + b->len - VCRYPTO_SIG_LEN, VCRYPTO_SIG_LEN);
	e = changed_entries(bm, b->p + MANIFEST_DELTA_HDR, n);
	pages = xmalloc((n + 1) * sizeof(*pages));
	for (uint32_t i = 0; i < n; i++) {
		uint32_t pg =
		    wire_get32(b->p + MANIFEST_DELTA_HDR + (size_t)i * MANIFEST_CHANGE_LEN) /
		    MANIFEST_PAGE_ENTRIES;

		if (k == 0 || pages[k - 1] != pg)
			pages[k++] = pg;
	}
	dbuf_resize(b, delta_len(n, k) - VCRYPTO_SIG_LEN);
	wire_put32(b->p + DH_NPAGES, k);
	pg_sec = b->p + changes_end;
	for (uint32_t i = 0; i < k; i++, pg_sec += MANIFEST_DPAGE_LEN) {
		wire_put32(pg_sec, pages[i]);
		memset(pg_sec + 4, 0, VCRYPTO_HASH_LEN);
		if (pages[i] < bm->root.page_count)
			manifest_entries_hash(e + (size_t)pages[i] * MANIFEST_PAGE_ENTRIES,
			                      manifest_page_len(&bm->root, pages[i]), pg_sec + 4);
	}
	memcpy(pg_sec, root_sig, VCRYPTO_SIG_LEN);
	free(pages);
	free(e);
}

/*
 * ADD_PAGE: one more page record after the last (the next page, with its
 * unchanged hash); DROP_PAGE: the first record removed. 1 if done.
 */
static int edit_pages(struct dbuf *b, const struct manifest *bm, int add)
{
	uint32_t n = wire_get32(b->p + DH_NCHANGES), m = wire_get32(b->p + DH_NPAGES);
	uint8_t *sec = b->p + MANIFEST_DELTA_HDR + (size_t)n * MANIFEST_CHANGE_LEN, *rec;
	uint32_t pg;

	if (add) {
		if (m == 0 || m >= n)
			return 0; /* the decoder would refuse the counts, not the lie */
		pg = wire_get32(sec + (size_t)(m - 1) * MANIFEST_DPAGE_LEN) + 1;
		if (pg >= bm->root.page_count)
			return 0;
		dbuf_resize(b, b->len + MANIFEST_DPAGE_LEN);
		rec = b->p + MANIFEST_DELTA_HDR + (size_t)n * MANIFEST_CHANGE_LEN +
		      (size_t)m * MANIFEST_DPAGE_LEN;
		memmove(rec + MANIFEST_DPAGE_LEN, rec, VCRYPTO_SIG_LEN);
		wire_put32(rec, pg);
		memcpy(rec + 4, bm->root.page_hash[pg], VCRYPTO_HASH_LEN);
		wire_put32(b->p + DH_NPAGES, m + 1);
		return 1;
	}
	if (m <= 1)
		return 0; /* none left: the decoder would refuse the counts */
	memmove(sec, sec + MANIFEST_DPAGE_LEN,
	        (size_t)(m - 1) * MANIFEST_DPAGE_LEN + VCRYPTO_SIG_LEN);
	dbuf_resize(b, b->len - MANIFEST_DPAGE_LEN);
	wire_put32(b->p + DH_NPAGES, m - 1);
	return 1;
}

/* FIX_ROOT: the new root hash and its signature, for the root the page section gives. */
static void fix_root(struct dbuf *b, const struct manifest *bm)
{
	uint32_t n = wire_get32(b->p + DH_NCHANGES), m = wire_get32(b->p + DH_NPAGES);
	const uint8_t *pg = b->p + MANIFEST_DELTA_HDR + (size_t)n * MANIFEST_CHANGE_LEN;
	struct manifest_root nr;
	uint8_t *enc;
	size_t elen;

	fz_root_copy(&nr, &bm->root);
	nr.generation = wire_get64(b->p + DH_NEW_GEN);
	nr.flags = wire_get16(b->p + DH_FLAGS);
	for (uint32_t i = 0; i < m; i++, pg += MANIFEST_DPAGE_LEN)
		if (wire_get32(pg) < nr.page_count)
			memcpy(nr.page_hash[wire_get32(pg)], pg + 4, VCRYPTO_HASH_LEN);
	if (manifest_root_encode(&nr, &enc, &elen) != 0)
		abort();
	vcrypto_hash(b->p + DH_ROOT_HASH, enc, elen - VCRYPTO_SIG_LEN);
	vcrypto_sign(b->p + b->len - VCRYPTO_SIG_LEN, MANIFEST_ROOT_DOMAIN, b->p + DH_ROOT_HASH,
	             VCRYPTO_HASH_LEN, fz_key.sk);
	free(enc);
	manifest_root_free(&nr);
}

/* Whether the delta's page hashes are those of the base's entries with its changes. */
static int pages_consistent(const struct manifest *bm, const struct manifest_delta *d,
                            struct manifest_entry *e)
{
	uint8_t h[VCRYPTO_HASH_LEN];

	for (uint32_t i = 0; i < d->npages; i++) {
		manifest_entries_hash(e + (size_t)d->page[i] * MANIFEST_PAGE_ENTRIES,
		                      manifest_page_len(&bm->root, d->page[i]), h);
		if (memcmp(h, d->page_hash[i], sizeof(h)) != 0)
			return 0;
	}
	return 1;
}

/* r is the base's root with d applied: check it, and the pages under it. */
static void check_applied(const struct manifest *bm, const struct manifest_delta *d,
                          const struct manifest_root *r, const struct manifest_entry *e,
                          int consistent)
{
	static struct manifest_entry out[MANIFEST_PAGE_ENTRIES];
	static uint8_t page[MANIFEST_PAGE_ENTRIES * MANIFEST_ENTRY_LEN];
	static uint8_t again_page[MANIFEST_PAGE_ENTRIES * MANIFEST_ENTRY_LEN];
	struct manifest_root again = *r, r2;
	uint8_t h[VCRYPTO_HASH_LEN];
	uint8_t *enc, *enc2;
	size_t elen, elen2;
	uint32_t k = 0;

	if (r->generation != d->new_gen || r->flags != d->root_flags ||
	    memcmp(r->root_hash, d->new_root_hash, VCRYPTO_HASH_LEN) != 0 ||
	    memcmp(r->sig, d->root_sig, VCRYPTO_SIG_LEN) != 0 ||
	    manifest_root_verify(r, fz_key.pk) != 0)
		abort();
	for (uint32_t pg = 0; pg < r->page_count; pg++) {
		const uint8_t *want = bm->root.page_hash[pg];
		uint32_t n = manifest_page_len(r, pg);
		int rc, match;

		if (k < d->npages && d->page[k] == pg)
			want = d->page_hash[k++];
		if (memcmp(r->page_hash[pg], want, VCRYPTO_HASH_LEN) != 0)
			abort();
		/*
		 * The page as the entries now are decodes exactly when its hash is the
		 * root's; an honest delta leaves no page that does not.
		 */
		manifest_entries_encode(e + (size_t)pg * MANIFEST_PAGE_ENTRIES, n, page);
		vcrypto_hash(h, page, (size_t)n * MANIFEST_ENTRY_LEN);
		match = memcmp(h, r->page_hash[pg], sizeof(h)) == 0;
		if (consistent && !match)
			abort();
		rc = manifest_page_decode(r, pg, page, (size_t)n * MANIFEST_ENTRY_LEN, out);
		if ((rc == 0) != match)
			abort();
		if (rc == 0) {
			manifest_entries_encode(out, n, again_page);
			if (memcmp(again_page, page, (size_t)n * MANIFEST_ENTRY_LEN) != 0)
				abort();
		}
	}
	if (k != d->npages)
		abort();
	/* The pages it lists are exactly those its changes touch (§9.1), no more, no fewer. */
	k = 0;
	for (uint32_t i = 0; i < d->nchanges; i++) {
		uint32_t pg = d->changes[i].chunk / MANIFEST_PAGE_ENTRIES;

		if (i > 0 && pg == d->changes[i - 1].chunk / MANIFEST_PAGE_ENTRIES)
			continue;
		if (k >= d->npages || d->page[k++] != pg)
			abort();
	}
	if (k != d->npages)
		abort();
	/* The new root travels: it encodes and decodes to itself. */
	if (manifest_root_encode(r, &enc, &elen) != 0 ||
	    manifest_root_decode(enc, elen, &r2) != 0 ||
	    memcmp(r2.root_hash, r->root_hash, VCRYPTO_HASH_LEN) != 0 ||
	    manifest_root_encode(&r2, &enc2, &elen2) != 0 || elen2 != elen ||
	    memcmp(enc, enc2, elen) != 0)
		abort();
	free(enc);
	free(enc2);
	manifest_root_free(&r2);
	/* Not twice: the generation moved on. */
	again.page_hash = xmalloc((size_t)r->page_count * VCRYPTO_HASH_LEN);
	memcpy(again.page_hash, r->page_hash, (size_t)r->page_count * VCRYPTO_HASH_LEN);
	if (manifest_delta_apply_root(&again, d, fz_key.pk) == 0)
		abort();
	manifest_root_free(&again);
	/* Not with another key. */
	fz_root_copy(&again, &bm->root);
	if (manifest_delta_apply_root(&again, d, fz_other.pk) == 0)
		abort();
	manifest_root_free(&again);
}

/* Entry by entry (the structs have padding). */
static int entries_equal(const struct manifest_entry *a, const struct manifest_entry *b, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (a[i].gen != b[i].gen || a[i].flags != b[i].flags ||
		    memcmp(a[i].hash, b[i].hash, VCRYPTO_HASH_LEN) != 0)
			return 0;
	return 1;
}

/*
 * The source side with d's changes: its delta must apply to the base's root
 * and give the source's new root; its entries must be the base's with the
 * changes at the next generation; and if the fuzzer's delta (signed, slen
 * bytes) applied and told the truth, it is the same bytes.
 */
static void check_make(const struct manifest *bm, const struct manifest_delta *d,
                       const uint8_t *signed_delta, size_t slen)
{
	struct manifest_entry *e = xmalloc((size_t)bm->root.chunk_count * sizeof(*e));
	struct manifest m;
	struct manifest_delta d2;
	struct manifest_root r;
	uint8_t *blob;
	size_t blen;

	memcpy(e, bm->entries, (size_t)bm->root.chunk_count * sizeof(*e));
	for (uint32_t i = 0; i < d->nchanges; i++) {
		e[d->changes[i].chunk] = d->changes[i].entry;
		e[d->changes[i].chunk].gen = bm->root.generation + 1;
	}
	fz_manifest_copy(&m, bm);
	if (manifest_delta_make(&m, d->changes, d->nchanges, d->root_flags, fz_key.sk, &blob,
	                        &blen) != 0)
		abort(); /* ascending changes inside the volume with known flags */
	if (!entries_equal(m.entries, e, m.root.chunk_count))
		abort();
	free(e);
	if (signed_delta != NULL && (blen != slen || memcmp(blob, signed_delta, slen) != 0))
		abort(); /* one encoding, one signature per delta */
	if (manifest_delta_decode(blob, blen, &d2) != 0)
		abort();
	fz_root_copy(&r, &bm->root);
	if (manifest_delta_apply_root(&r, &d2, fz_key.pk) != 0 ||
	    memcmp(r.root_hash, m.root.root_hash, VCRYPTO_HASH_LEN) != 0 ||
	    memcmp(r.sig, m.root.sig, VCRYPTO_SIG_LEN) != 0 ||
	    memcmp(r.page_hash, m.root.page_hash, (size_t)r.page_count * VCRYPTO_HASH_LEN) != 0)
		abort();
	manifest_root_free(&r);
	manifest_delta_free(&d2);
	free(blob);
	manifest_free(&m);
}

static void write_seeds(void)
{
	static const uint32_t chunks[][5] = {{0}, {1}, {0, 2}, {0, 5, 1030, 2047, 2099}};
	static const uint32_t counts[] = {0, 1, 2, 5};

	for (unsigned b = 0; b < FZ_NBASES; b++) {
		for (unsigned s = 0; s < sizeof(counts) / sizeof(counts[0]); s++) {
			struct manifest_change ch[5];
			struct manifest m;
			uint8_t *blob, *in;
			size_t len;
			char name[64];

			if (counts[s] > 0 && chunks[s][counts[s] - 1] >= base[b].root.chunk_count)
				continue;
			memset(ch, 0, sizeof(ch));
			for (uint32_t i = 0; i < counts[s]; i++) {
				ch[i].chunk = chunks[s][i];
				ch[i].entry.flags = i == 1 ? MANIFEST_F_ZERO : 0;
				memset(ch[i].entry.hash, (int)(0xa0 + i), VCRYPTO_HASH_LEN);
			}
			fz_manifest_copy(&m, &base[b]);
			if (manifest_delta_make(&m, ch, counts[s],
			                        s % 2 ? 0 : MANIFEST_ROOT_F_FINAL, fz_key.sk, &blob,
			                        &len) != 0)
				abort();
			in = xmalloc(len - VCRYPTO_SIG_LEN + 1);
			in[0] = (uint8_t)(FIX_LEN | FIX_ALL | (b << BASE_BIT));
			memcpy(in + 1, blob, len - VCRYPTO_SIG_LEN);
			snprintf(name, sizeof(name), "base%u-changes%u", b, counts[s]);
			fz_seed_write(name, in, len - VCRYPTO_SIG_LEN + 1);
			/* The same with a page too many, or one too few: both must be refused. */
			if (b == 1 && counts[s] >= 2) {
				in[0] |= counts[s] == 2 ? ADD_PAGE : DROP_PAGE;
				snprintf(name, sizeof(name), "base%u-changes%u-%s", b, counts[s],
				         counts[s] == 2 ? "addpage" : "droppage");
				fz_seed_write(name, in, len - VCRYPTO_SIG_LEN + 1);
			}
			free(in);
			free(blob);
			manifest_free(&m);
		}
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
	for (unsigned b = 0; b < FZ_NBASES; b++)
		fz_base_build(&base[b], b);
	if (fz_seed_dir() != NULL)
		write_seeds();
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const struct manifest *bm;
	struct manifest_entry *e = NULL;
	struct manifest_delta d;
	struct manifest_root r;
	struct dbuf b = {0};
	unsigned done = 0;
	uint32_t n, m;
	uint8_t ctl;
	int rc, in_vol = 1, consistent = 0;

	if (size < 1)
		return 0;
	ctl = data[0];
	bm = &base[(ctl >> BASE_BIT) % FZ_NBASES];
	dbuf_resize(&b, size - 1);
	memcpy(b.p, data + 1, size - 1);
	if (b.len >= MANIFEST_DELTA_HDR) {
		n = wire_get32(b.p + DH_NCHANGES);
		m = wire_get32(b.p + DH_NPAGES);
		if ((ctl & FIX_LEN) && n <= CHANGES_CAP && m <= n)
			dbuf_resize(&b, delta_len(n, m) - VCRYPTO_SIG_LEN);
		if (ctl & FIX_HDR) {
			fix_hdr(&b, bm, n);
			done |= FIX_HDR;
		}
		if ((ctl & FIX_PAGES) && n <= CHANGES_CAP &&
		    b.len >= MANIFEST_DELTA_HDR + (size_t)n * MANIFEST_CHANGE_LEN) {
			fix_pages(&b, bm);
			done |= FIX_PAGES;
			if ((ctl & ADD_PAGE) && edit_pages(&b, bm, 1))
				done |= ADD_PAGE;
			else if ((ctl & DROP_PAGE) && edit_pages(&b, bm, 0))
				done |= DROP_PAGE;
		}
		m = wire_get32(b.p + DH_NPAGES);
		if ((ctl & FIX_ROOT) && n <= CHANGES_CAP && m <= n &&
		    b.len == delta_len(n, m) - VCRYPTO_SIG_LEN) {
			fix_root(&b, bm);
			done |= FIX_ROOT;
		}
	}
	/* The delta's own signature, over everything before it (§9.1). */
	vcrypto_sign(b.p + b.len, MANIFEST_DELTA_DOMAIN, b.p, b.len, fz_key.sk);
	b.len += VCRYPTO_SIG_LEN;
	if (manifest_delta_decode(b.p, b.len, &d) != 0)
		goto out;
	/* An empty delta (no changes, no pages) is legal: the freeze only sets FINAL. */
	if (d.nchanges > MANIFEST_DELTA_MAX_CHANGES || d.npages > d.nchanges ||
	    (d.npages == 0) != (d.nchanges == 0) || d.new_gen != d.old_gen + 1 ||
	    (d.root_flags & ~MANIFEST_ROOT_F_ALL) != 0)
		abort();
	for (uint32_t i = 0; i < d.nchanges; i++) {
		if (i > 0 && d.changes[i].chunk <= d.changes[i - 1].chunk)
			abort();
		if (d.changes[i].chunk >= bm->root.chunk_count)
			in_vol = 0;
	}

	fz_root_copy(&r, &bm->root);
	rc = manifest_delta_apply_root(&r, &d, fz_key.pk);
	if (rc != 0 && done == FIX_ALL && in_vol)
		abort(); /* honest in every part, yet refused */
	if (rc == 0 && (done & (ADD_PAGE | DROP_PAGE)))
		abort(); /* a page list that is not the changes' pages, accepted */
	if (in_vol) {
		e = changed_entries(bm, b.p + MANIFEST_DELTA_HDR, d.nchanges);
		consistent = d.npages > 0 && d.page[d.npages - 1] < bm->root.page_count &&
		             pages_consistent(bm, &d, e);
		if (d.nchanges == 0)
			consistent = 1;
		if ((done & FIX_PAGES) && !consistent)
			abort();
	}
	if (rc != 0) {
		if (r.generation != bm->root.generation ||
		    memcmp(r.page_hash, bm->root.page_hash,
		           (size_t)bm->root.page_count * VCRYPTO_HASH_LEN) != 0)
			abort(); /* a failed apply changed the root */
	} else {
		if (!in_vol)
			abort(); /* applied with a chunk outside the volume */
		check_applied(bm, &d, &r, e, consistent);
	}
	if (in_vol)
		check_make(bm, &d, rc == 0 && consistent ? b.p : NULL, b.len);
	manifest_root_free(&r);
	manifest_delta_free(&d);
out:
	free(e);
	free(b.p);
	return 0;
}
