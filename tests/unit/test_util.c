/* SPDX-License-Identifier: ISC */
/*
 * Unit tests of util's growable arrays and bitmaps.
 */
#include <criterion/criterion.h>

#include <stdlib.h>

#include "util.h"

Test(util, xgrow_doubles_when_full)
{
	uint32_t *a = NULL;
	size_t cap = 0;

	for (uint32_t n = 0; n < 1000; n++) {
		a = xgrow(a, &cap, n, sizeof(*a), 16);
		cr_assert_gt(cap, n);
		a[n] = n;
	}
	cr_assert_eq(cap, 1024); /* 16, 32, ..., 1024 */
	for (uint32_t n = 0; n < 1000; n++)
		cr_assert_eq(a[n], n);
	free(a);
}

Test(util, xgrow_keeps_room)
{
	uint32_t *a = xmalloc(8 * sizeof(*a)), *b;
	size_t cap = 8;

	b = xgrow(a, &cap, 7, sizeof(*a), 16);
	cr_assert_eq(b, a);
	cr_assert_eq(cap, 8);
	free(b);
}

Test(util, bitmap_bits)
{
	uint8_t *m = bitmap_new(17);

	for (uint32_t i = 0; i < 17 + 8; i++)
		cr_assert_eq(bit_get(m, i), 0);
	bit_set(m, 0);
	bit_set(m, 9);
	bit_set(m, 16);
	cr_assert_eq(m[0], 0x01);
	cr_assert_eq(m[1], 0x02);
	cr_assert_eq(m[2], 0x01);
	cr_assert(bit_get(m, 9));
	bit_clear(m, 9);
	cr_assert_not(bit_get(m, 9));
	cr_assert(bit_get(m, 16));
	free(m);
	m = bitmap_new(0);
	cr_assert_eq(m[0], 0);
	free(m);
}
