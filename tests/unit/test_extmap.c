/* SPDX-License-Identifier: ISC */
/*
 * Unit tests of extmap, which maps an NBD server's block status extents onto
 * the chunks that read as zeros: only chunks that ZERO extents cover whole
 * are marked (runs may span extents and replies; HOLE alone does not count;
 * the short last chunk ends at the image's end); malformed replies (no
 * extent, half an extent, length zero, beyond the image's end, out of order:
 * overlapping or with a gap) are refused whole, leave the map as it was and
 * make every later reply refused; a random comparison with a byte model.
 */
#include <criterion/criterion.h>

#include <stdlib.h>
#include <string.h>

#include "extmap.h"

#define CS 4096u
#define Z  EXTMAP_STATE_ZERO
#define H  EXTMAP_STATE_HOLE

/* The chunks marked, as a string of '0' (zero) and '.' (read), for readable asserts. */
static const char *marks(const struct extmap *m)
{
	static char buf[256];
	uint32_t i;

	for (i = 0; i < m->chunk_count && i < sizeof(buf) - 1; i++)
		buf[i] = extmap_is_zero(m, i) ? '0' : '.';
	buf[i] = '\0';
	return buf;
}

Test(extmap, zero_extents_mark_whole_chunks_only)
{
	struct extmap m;
	/* 8 chunks: data 1.5 chunks, zeros 3.5 chunks (marks chunks 2..4), data 1, zeros 2. */
	const uint32_t e[] = {CS + CS / 2, 0, 3 * CS + CS / 2, Z | H, CS, 0, 2 * CS, Z};

	cr_assert_eq(extmap_init(&m, 8 * CS, CS), 0);
	cr_assert_eq(m.chunk_count, 8);
	cr_assert_eq(extmap_add(&m, 0, e, 8), 0);
	cr_assert_str_eq(marks(&m), "..000.00");
	cr_assert_eq(m.nzero, 5);
	cr_assert_eq(m.next, 8 * CS);
	extmap_free(&m);
}

Test(extmap, hole_without_zero_is_read)
{
	struct extmap m;
	const uint32_t e[] = {2 * CS, H, 2 * CS, Z};

	cr_assert_eq(extmap_init(&m, 4 * CS, CS), 0);
	cr_assert_eq(extmap_add(&m, 0, e, 4), 0);
	cr_assert_str_eq(marks(&m), "..00");
	extmap_free(&m);
}

Test(extmap, runs_span_extents_and_replies)
{
	struct extmap m;
	/* Zeros in pieces of a third of a chunk, one extent per reply. */
	const uint32_t third[] = {CS / 4, Z};
	const uint32_t data[] = {CS / 4, 0};

	cr_assert_eq(extmap_init(&m, 4 * CS, CS), 0);
	for (int i = 0; i < 10; i++) /* bytes [0, 2.5 chunks) */
		cr_assert_eq(extmap_add(&m, m.next, third, 2), 0);
	cr_assert_str_eq(marks(&m), "00..");
	cr_assert_eq(extmap_add(&m, m.next, data, 2), 0);  /* [2.5, 2.75): data */
	cr_assert_eq(extmap_add(&m, m.next, third, 2), 0); /* [2.75, 3) */
	for (int i = 0; i < 4; i++)
		cr_assert_eq(extmap_add(&m, m.next, third, 2), 0);
	cr_assert_str_eq(marks(&m), "00.0");
	cr_assert_eq(m.next, 4 * CS);
	extmap_free(&m);
}

Test(extmap, short_last_chunk_ends_at_the_image_end)
{
	struct extmap m;
	const uint32_t e[] = {2 * CS, 0, CS + 100, Z};

	cr_assert_eq(extmap_init(&m, 3 * CS + 100, CS), 0);
	cr_assert_eq(m.chunk_count, 4);
	cr_assert_eq(extmap_add(&m, 0, e, 4), 0);
	cr_assert_str_eq(marks(&m), "..00");
	extmap_free(&m);
}

Test(extmap, zero_run_starting_inside_the_last_chunk)
{
	struct extmap m;
	const uint32_t e[] = {3 * CS + 50, 0, 50, Z};

	cr_assert_eq(extmap_init(&m, 3 * CS + 100, CS), 0);
	cr_assert_eq(extmap_add(&m, 0, e, 4), 0);
	cr_assert_str_eq(marks(&m), "....");
	extmap_free(&m);
}

/* A refused reply leaves m as it was; every later one is refused too. */
static void refused(struct extmap *m, uint64_t off, const uint32_t *e, size_t n, const char *what)
{
	struct extmap before = *m;
	size_t nbytes = (m->chunk_count + 7) / 8;
	uint8_t bits[8];

	cr_assert_leq(nbytes, sizeof(bits));
	memcpy(bits, m->zero, nbytes);
	cr_assert_eq(extmap_add(m, off, e, n), -1, "%s taken", what);
	cr_assert_not_null(m->why);
	cr_assert_eq(m->next, before.next, "%s moved the cursor", what);
	cr_assert_eq(m->nzero, before.nzero, "%s marked chunks", what);
	cr_assert_arr_eq(m->zero, bits, nbytes, "%s changed the map", what);
	/* A good reply after it is refused as well. */
	const uint32_t good[] = {CS, Z};
	cr_assert_eq(extmap_add(m, m->next, good, 2), -1);
}

/* A map of 8 chunks whose first 2 are known zero, at offset 2 chunks. */
static void two_zero(struct extmap *m)
{
	const uint32_t e[] = {2 * CS, Z};

	cr_assert_eq(extmap_init(m, 8 * CS, CS), 0);
	cr_assert_eq(extmap_add(m, 0, e, 2), 0);
	cr_assert_str_eq(marks(m), "00......");
}

Test(extmap, zero_length_extent_is_refused_whole)
{
	struct extmap m;
	/* Good zero extents around the bad one: none of them is taken. */
	const uint32_t e[] = {2 * CS, Z, 0, Z, 2 * CS, Z};

	two_zero(&m);
	refused(&m, 2 * CS, e, 6, "a zero-length extent");
	cr_assert_str_eq(marks(&m), "00......");
	extmap_free(&m);
}

Test(extmap, extent_beyond_the_end_is_refused)
{
	struct extmap m;
	const uint32_t e[] = {2 * CS, Z, 4 * CS + 1, Z};

	two_zero(&m);
	refused(&m, 2 * CS, e, 4, "an extent past the end");
	cr_assert_str_eq(marks(&m), "00......");
	extmap_free(&m);
}

Test(extmap, huge_extents_do_not_wrap)
{
	struct extmap m;
	const uint32_t e[] = {UINT32_MAX, Z, UINT32_MAX, Z, UINT32_MAX, Z};

	/* 2^33 bytes: the third extent of 4 GiB would pass the end. */
	cr_assert_eq(extmap_init(&m, 1ull << 33, 1u << 22), 0);
	cr_assert_eq(extmap_add(&m, 0, e, 6), -1);
	cr_assert_eq(m.next, 0);
	cr_assert_eq(m.nzero, 0);
	extmap_free(&m);
	/* Two fit: all chunks but those touching the last 2 bytes are marked. */
	cr_assert_eq(extmap_init(&m, 1ull << 33, 1u << 22), 0);
	cr_assert_eq(extmap_add(&m, 0, e, 4), 0);
	cr_assert_eq(m.next, (1ull << 33) - 2);
	cr_assert_eq(m.nzero, m.chunk_count - 1);
	extmap_free(&m);
}

Test(extmap, out_of_order_replies_are_refused)
{
	struct extmap m;
	const uint32_t e[] = {CS, Z};

	/* The same reply again (a buggy server calling back twice): overlaps. */
	two_zero(&m);
	refused(&m, 0, e, 2, "a repeated reply");
	extmap_free(&m);
	/* One that skips a chunk. */
	two_zero(&m);
	refused(&m, 3 * CS, e, 2, "a reply with a gap");
	extmap_free(&m);
	/* One from before the start of the last (off < next, not 0). */
	two_zero(&m);
	refused(&m, CS, e, 2, "a reply that goes back");
	cr_assert_str_eq(marks(&m), "00......");
	extmap_free(&m);
}

Test(extmap, empty_and_odd_replies_are_refused)
{
	struct extmap m;
	const uint32_t e[] = {CS, Z, CS};

	two_zero(&m);
	refused(&m, 2 * CS, e, 0, "a reply with no extent");
	extmap_free(&m);
	two_zero(&m);
	refused(&m, 2 * CS, e, 3, "half an extent");
	extmap_free(&m);
}

Test(extmap, a_reply_after_the_end_is_refused)
{
	struct extmap m;
	const uint32_t e[] = {4 * CS, Z};

	cr_assert_eq(extmap_init(&m, 4 * CS, CS), 0);
	cr_assert_eq(extmap_add(&m, 0, e, 2), 0);
	cr_assert_eq(extmap_add(&m, 4 * CS, e, 2), -1);
	cr_assert_str_eq(marks(&m), "0000");
	extmap_free(&m);
}

Test(extmap, bad_geometry)
{
	struct extmap m;

	cr_assert_eq(extmap_init(&m, 100, 0), -1);
	cr_assert_eq(extmap_init(&m, (uint64_t)UINT32_MAX * 2 + 1, 2), -1);
	cr_assert_eq(extmap_init(&m, UINT64_MAX, 1u << 22), -1);
	cr_assert_eq(extmap_init(&m, 0, CS), 0);
	cr_assert_eq(m.chunk_count, 0);
	cr_assert_eq(extmap_is_zero(&m, 0), 0);
	extmap_free(&m);
}

Test(extmap, take_gives_the_bitmap_away)
{
	struct extmap m;
	const uint32_t e[] = {CS, Z};
	uint8_t *bits;

	cr_assert_eq(extmap_init(&m, 2 * CS, CS), 0);
	cr_assert_eq(extmap_add(&m, 0, e, 2), 0);
	bits = extmap_take(&m);
	cr_assert_eq(bits[0], 1);
	cr_assert_null(m.zero);
	cr_assert_eq(extmap_is_zero(&m, 0), 0);
	extmap_free(&m);
	free(bits);
}

/* Random replies (in order, well formed) against a byte model of what reads as zeros. */
Test(extmap, random_against_a_byte_model)
{
	uint64_t x = 0x2545f4914f6cdd1dull;

	for (int round = 0; round < 300; round++) {
		uint32_t cs = 1u + (uint32_t)(x % 97);
		uint64_t size = x % 3000;
		uint8_t *model = calloc(size + 1, 1);
		struct extmap m;

		cr_assert_eq(extmap_init(&m, size, cs), 0);
		while (m.next < size) {
			uint32_t e[16];
			size_t n = 0;
			uint64_t pos = m.next;

			while (n < 16 && pos < size) {
				x ^= x << 13, x ^= x >> 7, x ^= x << 17;
				e[n] = 1 + (uint32_t)(x % (size - pos < 300 ? size - pos : 300));
				e[n + 1] = (uint32_t)(x >> 40) & 3;
				if (e[n + 1] & Z)
					memset(model + pos, 1, e[n]);
				pos += e[n];
				n += 2;
				if (x & (1ull << 20))
					break;
			}
			cr_assert_eq(extmap_add(&m, m.next, e, n), 0);
		}
		for (uint32_t c = 0; c < m.chunk_count; c++) {
			uint64_t a = (uint64_t)c * cs, b = a + cs > size ? size : a + cs;
			int all = 1;

			for (uint64_t i = a; i < b; i++)
				all &= model[i];
			cr_assert_eq(extmap_is_zero(&m, c), all, "round %d chunk %u", round, c);
		}
		extmap_free(&m);
		free(model);
		x = x * 6364136223846793005ull + 1442695040888963407ull;
	}
}
